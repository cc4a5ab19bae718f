using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Threading.Channels;

namespace OnnxLora.Core.IO;

/// <summary>
/// Runs writes in the order given on one background thread, with at most a few waiting, so that a streaming
/// producer computes (reads, merges, converts) the next block while the previous one is written: a bounded
/// producer/consumer pipeline (System.Threading.Channels), whose bound keeps memory at a few blocks. A failed write
/// stops the pipeline and its exception surfaces from the next <see cref="Enqueue"/> or from <see cref="Complete"/>.
/// Data to write goes in the pipeline's own buffers (<see cref="RentBuffer"/>): capacity + 1 of a fixed size, each free
/// again once written, so the memory in flight is exactly that whatever the data's size.
/// A whole tensor can be handed over too (<see cref="RentTensorBuffer"/>, <see cref="EnqueueTensorWrite"/>): the producer
/// fills the next tensor while the previous one is written, with two such buffers at most.
/// </summary>
public sealed class WriteBehind : IDisposable
{
    /// <summary>Whole-tensor buffers: one being written while the producer fills the other.</summary>
    private const int TensorBufferCount = 2;

    /// <summary>The bytes of a whole tensor are written in pieces of this size (a span cannot exceed 2 GiB; a tensor can).</summary>
    private const int TensorPieceBytes = 64 << 20;

    private readonly Channel<Action> _queue;
    private readonly Task _worker;
    private readonly Channel<byte[]> _free = Channel.CreateUnbounded<byte[]>();
    private readonly int _bufferCount;
    private int _allocated;
    private readonly Channel<float[]> _freeTensors = Channel.CreateUnbounded<float[]>();
    private int _tensorsAllocated;
    private volatile bool _abandoned;

    /// <summary>A pipeline letting <paramref name="capacity"/> writes wait while one runs, with buffers of <paramref name="bufferBytes"/>.</summary>
    public WriteBehind(int capacity, int bufferBytes)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(bufferBytes, 1);
        BufferBytes = bufferBytes;
        Capacity = capacity;
        _bufferCount = capacity + 1;
        _queue = Channel.CreateBounded<Action>(new BoundedChannelOptions(capacity) { SingleReader = true, SingleWriter = true, FullMode = BoundedChannelFullMode.Wait });
        _worker = Task.Factory.StartNew(Run, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
    }

    /// <summary>How many writes may wait while one runs (the pipeline has one buffer more than that).</summary>
    public int Capacity { get; }

    /// <summary>The size of each buffer <see cref="RentBuffer"/> gives.</summary>
    public int BufferBytes { get; }

    /// <summary>A buffer of <see cref="BufferBytes"/> for <see cref="EnqueueWrite"/>; blocks while all are waiting to be written.</summary>
    /// <exception cref="Exception">An earlier write failed: its exception, as thrown.</exception>
    public byte[] RentBuffer() => Take(_free, ref _allocated, _bufferCount) ?? new byte[BufferBytes];

    /// <summary>
    /// A buffer of at least <paramref name="count"/> fp32 values for one whole tensor, to fill (and encode in place) and
    /// hand to <see cref="EnqueueTensorWrite"/>, or to give back with <see cref="ReturnTensorBuffer"/>. At most two exist;
    /// one too small for this tensor is replaced by a larger one, so both end at the size of the largest tensor (memory:
    /// two of it). Blocks while both wait to be written. Not zeroed.
    /// </summary>
    /// <exception cref="Exception">An earlier write failed: its exception, as thrown.</exception>
    public float[] RentTensorBuffer(int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        var buffer = Take(_freeTensors, ref _tensorsAllocated, TensorBufferCount);
        return buffer is not null && buffer.Length >= count ? buffer : GC.AllocateUninitializedArray<float>(Math.Max(count, buffer?.Length ?? 0));
    }

    /// <summary>Gives back a buffer of <see cref="RentTensorBuffer"/> that was not handed to <see cref="EnqueueTensorWrite"/>.</summary>
    public void ReturnTensorBuffer(float[] buffer) => _freeTensors.Writer.TryWrite(buffer);

    /// <summary>
    /// Queues <paramref name="write"/> of the first <paramref name="byteCount"/> bytes of <paramref name="buffer"/> (from
    /// <see cref="RentTensorBuffer"/>: a tensor encoded in place), in order, in pieces of at most 64 MiB with each piece's
    /// byte offset in the tensor; the buffer is free again afterwards.
    /// </summary>
    /// <exception cref="Exception">An earlier write failed: its exception, as thrown.</exception>
    public void EnqueueTensorWrite(float[] buffer, long byteCount, PieceWriter write)
    {
        ArgumentNullException.ThrowIfNull(buffer);
        ArgumentNullException.ThrowIfNull(write);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(byteCount, (long)buffer.Length * sizeof(float));
        Enqueue(() =>
        {
            ref byte start = ref Unsafe.As<float, byte>(ref MemoryMarshal.GetArrayDataReference(buffer));
            long done = 0;
            do
            {
                int n = (int)Math.Min(TensorPieceBytes, byteCount - done);
                write(done, MemoryMarshal.CreateReadOnlySpan(ref Unsafe.Add(ref start, (nint)done), n));
                done += n;
            }
            while (done < byteCount);
            _freeTensors.Writer.TryWrite(buffer);
        });
    }

    /// <summary>Writes one piece of a tensor: its first byte's offset in the tensor, and the bytes.</summary>
    public delegate void PieceWriter(long byteOffset, ReadOnlySpan<byte> bytes);

    /// <summary>A free buffer of <paramref name="free"/>, or null while fewer than <paramref name="max"/> exist (the caller makes one); else waits for one.</summary>
    private T[]? Take<T>(Channel<T[]> free, ref int allocated, int max)
    {
        if (free.Reader.TryRead(out T[]? buffer))
        {
            return buffer;
        }
        if (allocated < max)
        {
            allocated++;
            return null;
        }
        var next = free.Reader.ReadAsync().AsTask();
        Task.WaitAny(next, _worker);
        if (next.IsCompletedSuccessfully)
        {
            return next.Result;
        }
        _worker.GetAwaiter().GetResult();
        throw new InvalidOperationException("the write pipeline has ended; no buffer will be freed.");
    }

    /// <summary>Queues <paramref name="write"/> of the first <paramref name="length"/> bytes of <paramref name="buffer"/> (from <see cref="RentBuffer"/>), which is free again afterwards.</summary>
    /// <exception cref="Exception">An earlier write failed: its exception, as thrown.</exception>
    public void EnqueueWrite(byte[] buffer, int length, Action<ReadOnlyMemory<byte>> write)
    {
        ArgumentNullException.ThrowIfNull(buffer);
        ArgumentNullException.ThrowIfNull(write);
        Enqueue(() =>
        {
            write(buffer.AsMemory(0, length));
            _free.Writer.TryWrite(buffer);
        });
    }

    /// <summary>Queues <paramref name="write"/> after the writes already queued; blocks while the queue is full.</summary>
    /// <exception cref="Exception">An earlier write failed: its exception, as thrown.</exception>
    public void Enqueue(Action write)
    {
        ArgumentNullException.ThrowIfNull(write);
        try
        {
            _queue.Writer.WriteAsync(write).AsTask().GetAwaiter().GetResult();
        }
        catch (ChannelClosedException)
        {
            _worker.GetAwaiter().GetResult();
            throw;
        }
    }

    /// <summary>Waits until every write queued so far has run; the pipeline stays open for more.</summary>
    /// <exception cref="Exception">A write failed: its exception, as thrown.</exception>
    public void Drain()
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Enqueue(done.SetResult);
        Task.WaitAny(done.Task, _worker);
        if (!done.Task.IsCompleted)
        {
            _worker.GetAwaiter().GetResult();
            throw new InvalidOperationException("the write pipeline has ended before the queued writes ran.");
        }
    }

    /// <summary>Waits until every queued write has run.</summary>
    /// <exception cref="Exception">A write failed: its exception, as thrown.</exception>
    public void Complete()
    {
        _queue.Writer.TryComplete();
        _worker.GetAwaiter().GetResult();
    }

    /// <summary>
    /// Without <see cref="Complete"/> first (the producer failed): drops the queued writes and waits for the running one. Exceptions
    /// were reported by <see cref="Complete"/> or <see cref="Enqueue"/>, or are dropped with the output.
    /// </summary>
    public void Dispose()
    {
        _abandoned = true;
        _queue.Writer.TryComplete();
        try
        {
            _worker.Wait();
        }
        catch (AggregateException)
        {
            // The caller is already leaving on an exception of its own (or saw this one from Complete/Enqueue).
        }
    }

    private void Run()
    {
        var reader = _queue.Reader;
        try
        {
            while (reader.WaitToReadAsync().AsTask().GetAwaiter().GetResult())
            {
                while (reader.TryRead(out var write))
                {
                    if (!_abandoned)
                    {
                        write();
                    }
                }
            }
        }
        catch (Exception e)
        {
            _queue.Writer.TryComplete(e);
            throw;
        }
    }
}
