using Microsoft.Win32.SafeHandles;
using OnnxLora.Core.IO;

namespace OnnxLora.Core.Onnx.Internals;

/// <summary>
/// The external data file as <see cref="ExternalDataWriter"/> fills it: a write-only, seekable <see cref="Stream"/> whose
/// writes run behind on one background thread (<see cref="WriteBehind"/>) as positioned writes on the file's handle, so
/// the next tensor is read, merged, encoded and transposed while the previous one goes to the kernel (on a 2.97 GB export
/// the writes alone were 28 % of the process's CPU time, all of it on the producing thread before this). A producer that
/// knows it (<see cref="TensorStreamer"/>) hands over whole buffers of the pipeline's own (<see cref="RentBuffer"/>), has a
/// buffer's pieces written at several offsets, or has a range of a file copied by the kernel; any other writer goes
/// through <see cref="Write(ReadOnlySpan{byte})"/>, which copies into those buffers. Every write reports its bytes to
/// <see cref="AtomicFile.NoteWritten"/> from the writing thread. <see cref="Complete"/> waits for all of them; disposing
/// without it drops what is still queued (the output is being abandoned).
/// </summary>
internal sealed class ExternalDataStream : Stream
{
    /// <summary>Writes that may wait while one runs: with <see cref="DefaultBufferBytes"/> buffers, 48 MiB in flight at most.</summary>
    private const int InFlight = 2;

    /// <summary>The pipeline's buffer size: 16 MiB writes are large enough that the count of calls does not matter.</summary>
    internal const int DefaultBufferBytes = 16 << 20;

    private readonly AtomicFile _file;
    private readonly SafeFileHandle _handle;
    private readonly WriteBehind _behind;
    private long _position;
    private long _length;

    public ExternalDataStream(AtomicFile file, int bufferBytes = DefaultBufferBytes)
    {
        ArgumentNullException.ThrowIfNull(file);
        _file = file;
        _handle = file.Stream.SafeFileHandle;
        _behind = new WriteBehind(InFlight, bufferBytes);
    }

    /// <summary>The size of the buffers <see cref="RentBuffer"/> gives.</summary>
    public int BufferBytes => _behind.BufferBytes;

    public override bool CanRead => false;

    public override bool CanSeek => true;

    public override bool CanWrite => true;

    public override long Length => _length;

    public override long Position
    {
        get => _position;
        set
        {
            ArgumentOutOfRangeException.ThrowIfNegative(value);
            _position = value;
        }
    }

    /// <summary>A buffer of <see cref="BufferBytes"/> to fill and pass to <see cref="WriteBuffer(byte[], int)"/>; blocks while all are in flight.</summary>
    public byte[] RentBuffer() => _behind.RentBuffer();

    /// <summary>Queues the first <paramref name="length"/> bytes of <paramref name="buffer"/> (from <see cref="RentBuffer"/>) at the position, and advances it.</summary>
    public void WriteBuffer(byte[] buffer, int length)
    {
        long at = _position;
        _behind.EnqueueWrite(buffer, length, data =>
        {
            RandomAccess.Write(_handle, data.Span, at);
            _file.NoteWritten(data.Length);
        });
        Advance(length);
    }

    /// <summary>
    /// Queues <paramref name="write"/>(file handle, the first <paramref name="length"/> bytes of <paramref name="buffer"/>), a buffer
    /// from <see cref="RentBuffer"/> whose pieces go to offsets of the caller's choosing; the position does not move.
    /// </summary>
    public void WriteBufferPieces(byte[] buffer, int length, Action<SafeFileHandle, ReadOnlySpan<byte>> write)
    {
        ArgumentNullException.ThrowIfNull(write);
        _behind.EnqueueWrite(buffer, length, data =>
        {
            write(_handle, data.Span);
            _file.NoteWritten(data.Length);
        });
    }

    /// <summary>
    /// Queues a kernel copy (<see cref="FileRange.Copy"/>, as <c>File.Copy</c> does) of <paramref name="length"/> bytes at
    /// <paramref name="offset"/> of the file <paramref name="path"/> to the position, and advances it. The file is opened when the
    /// copy runs; <paramref name="truncated"/> makes the error when it turns out shorter than that.
    /// </summary>
    public void CopyFrom(string path, long offset, long length, Func<Exception> truncated)
    {
        long at = _position;
        _behind.Enqueue(() =>
        {
            using var source = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.SequentialScan);
            try
            {
                FileRange.Copy(source, offset, _handle, at, length);
            }
            catch (EndOfStreamException)
            {
                throw truncated();
            }
            _file.NoteWritten(length);
        });
        Advance(length);
    }

    /// <summary>Any other write: copied into the pipeline's buffers and queued at the position.</summary>
    public override void Write(ReadOnlySpan<byte> buffer)
    {
        while (!buffer.IsEmpty)
        {
            byte[] chunk = RentBuffer();
            int n = Math.Min(chunk.Length, buffer.Length);
            buffer[..n].CopyTo(chunk);
            WriteBuffer(chunk, n);
            buffer = buffer[n..];
        }
    }

    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    /// <summary>Waits until every queued write has run.</summary>
    /// <exception cref="Exception">A write failed: its exception, as thrown.</exception>
    public void Complete() => _behind.Complete();

    /// <summary>Nothing to do: the writes are queued in order, and <see cref="Complete"/> waits for them.</summary>
    public override void Flush()
    {
    }

    public override long Seek(long offset, SeekOrigin origin)
    {
        Position = origin switch
        {
            SeekOrigin.Begin => offset,
            SeekOrigin.Current => _position + offset,
            _ => _length + offset,
        };
        return _position;
    }

    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException("the external data stream is write-only");

    public override void SetLength(long value) => throw new NotSupportedException("the external data file grows as it is written");

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _behind.Dispose();
        }
        base.Dispose(disposing);
    }

    private void Advance(long length)
    {
        _position += length;
        _length = Math.Max(_length, _position);
    }
}
