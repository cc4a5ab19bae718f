using System.Buffers;
using Microsoft.Win32.SafeHandles;
using OnnxLora.Core.Internals;
using OnnxLora.Core.IO;
using OnnxLora.Core.Peft;
using OnnxLora.Core.Safetensors;

namespace OnnxLora.Core.Onnx.Internals;

/// <summary>
/// Streams one stored float tensor into an ONNX data stream: read slice by slice, converted to the
/// output type (via fp32, nearest-even, as <see cref="FloatCodec"/> does; a plain copy when the types
/// match and nothing is rewritten), optionally rewritten whole in fp32 first (a merge), and transposed.
/// A rewritten tensor is whole in memory anyway: it is encoded whole in place and written in order, a band of output
/// rows at a time (each band a strided transpose of a band of source columns), with one sequential write per
/// band. A tensor read as it is streams block by block: each block of source rows is transposed in memory
/// and its pieces (one per output row) are written at their places in the output range, so no block holds
/// more than <see cref="BlockBytes"/> bytes. Bands are the better way whenever the source is in memory: the
/// pieces of a block are a few KB each, one positioned write apiece (measured on a 2.97 GB export: 311,344
/// writes; the write calls were 28 % of the process's CPU time in perf).
/// </summary>
internal sealed class TensorStreamer : OnnxTensorSource
{
    /// <summary>Output bytes per block (a whole tensor up to this size is transposed in one piece).</summary>
    internal const int BlockBytes = 32 << 20;

    /// <summary>Elements converted per step when the element types differ.</summary>
    private const int ConvertElements = 1 << 20;

    private readonly Input _input;
    private readonly TensorSpec _stored;
    private readonly bool _transpose;
    private readonly TensorRewrite? _rewrite;
    private readonly int _blockBytes;

    /// <param name="input">Where the stored bytes are.</param>
    /// <param name="stored">The stored tensor's name, type and shape.</param>
    /// <param name="dtype">The output type.</param>
    /// <param name="transpose">Write the transpose of the 2-D tensor.</param>
    /// <param name="rewrite">Changes the tensor in fp32 (stored layout) before it is converted: whole, or row by row when it can.</param>
    /// <param name="blockBytes">Output bytes per block; smaller only in tests, to exercise the block paths on small tensors.</param>
    public TensorStreamer(Input input, TensorSpec stored, DType dtype, bool transpose, TensorRewrite? rewrite, int blockBytes = BlockBytes)
        : base(dtype, transpose ? TransposedShape(stored) : stored.Shape)
    {
        _blockBytes = blockBytes;
        _input = input;
        _stored = stored;
        _transpose = transpose;
        _rewrite = rewrite;
    }

    /// <summary>Output bytes per block or band for <paramref name="destination"/>: no more than the external data pipeline's buffers.</summary>
    private int BlockBytesFor(Stream destination) =>
        destination is ExternalDataStream pipe ? Math.Min(_blockBytes, pipe.BufferBytes) : _blockBytes;

    private static long[] TransposedShape(TensorSpec stored) => stored.Shape.Count == 2
        ? [stored.Shape[1], stored.Shape[0]]
        : throw new ArgumentException($"{stored.Name}: only 2-D tensors can be stored transposed; found {stored.Shape.Count} dims.", nameof(stored));

    internal override void StartPrefetch()
    {
        if (_input.CopySource() is var (path, offset, _))
        {
            FileRange.StartPrefetch(path, offset, _stored.ByteLength);
        }
    }

    public override void WriteTo(Stream destination)
    {
        ArgumentNullException.ThrowIfNull(destination);
        long start = destination.CanSeek ? destination.Position : 0;
        using var reader = _input.Open();
        if (_transpose && _rewrite?.Rows?.Invoke() is { } rows && TensorBytes.FitsRowMerge(rows, _stored.ElementCount, DType))
        {
            WriteMergedByRows(destination, reader, rows);
            return;
        }
        float[]? values = null;
        if (_rewrite is not null)
        {
            values = ReadAll(reader);
            _rewrite.Whole(values.AsSpan(0, (int)_stored.ElementCount));
        }
        var fill = new Filler(reader, _stored.DType, DType, values);
        try
        {
            if (_transpose && values is not null && ByteLength <= Array.MaxLength)
            {
                WriteTransposedBands(destination, values);
            }
            else if (_transpose)
            {
                WriteTransposed(destination, start, fill);
            }
            else
            {
                WriteInOrder(destination, fill, copy: values is null && _stored.DType == DType);
            }
        }
        finally
        {
            fill.Dispose();
            if (values is not null)
            {
                ArrayPool<float>.Shared.Return(values);
            }
        }
    }

    /// <summary>
    /// The transpose of a tensor rewritten row by row: read, merged and encoded a block of rows at a time in the cache into one
    /// encoded copy (<see cref="TensorBytes.MergeRows"/>; no fp32 copy of the tensor), then written in bands.
    /// </summary>
    private void WriteMergedByRows(Stream destination, Reader reader, RowUpdate rows)
    {
        int total = checked((int)ByteLength);
        byte[] encoded = ArrayPool<byte>.Shared.Rent(total);
        try
        {
            var refuse = _rewrite!.RefuseNonFinite;
            var faults = TensorBytes.MergeRows(reader.Read, _stored.DType, DType, rows, encoded.AsSpan(0, total), check: refuse is not null);
            if (refuse is not null && faults.NonFinite >= 0)
            {
                throw refuse(faults.NonFinite, faults.NonFiniteValue);
            }
            WriteTransposedBands(destination, encoded.AsSpan(0, total));
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(encoded);
        }
    }

    /// <summary>The transpose of the rewritten <paramref name="values"/>, written in order: encoded whole in their own memory (fp32 output is
    /// the values' own bytes), then written in bands (<see cref="WriteTransposedBands(Stream, ReadOnlySpan{byte})"/>).</summary>
    private void WriteTransposedBands(Stream destination, float[] values)
    {
        int rows = checked((int)_stored.Shape[0]), cols = checked((int)_stored.Shape[1]);
        int total = checked((int)ByteLength);
        // The fp32 values are not needed after this: encoded in their own memory (fp32 output is already their bytes).
        TensorBytes.EncodeInPlace(DType, values.AsSpan(0, rows * cols));
        WriteTransposedBands(destination, System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan(0, (total + 3) / 4))[..total]);
    }

    /// <summary>
    /// The transpose of the encoded tensor <paramref name="source"/> (stored layout), written in order: bands of output rows — source
    /// columns [c0, c0 + k) — transposed with the source's row stride into one buffer each and written with one call.
    /// </summary>
    private void WriteTransposedBands(Stream destination, ReadOnlySpan<byte> source)
    {
        int size = DType.SizeOf();
        int rows = checked((int)_stored.Shape[0]), cols = checked((int)_stored.Shape[1]);
        if (rows == 0 || cols == 0)
        {
            return;
        }
        long bandRowBytes = (long)rows * size;
        int blockBytes = BlockBytesFor(destination);
        int bandRows = (int)Math.Clamp(blockBytes / bandRowBytes, 1, cols);
        int bandBytes = checked((int)(bandRows * bandRowBytes));
        // Bands go to the pipeline in its own buffers when they fit one; otherwise through one buffer of ours, written in place.
        var pipe = destination as ExternalDataStream;
        pipe = pipe is not null && bandBytes <= pipe.BufferBytes ? pipe : null;
        byte[]? own = pipe is null ? ArrayPool<byte>.Shared.Rent(Math.Max(blockBytes, bandBytes)) : null;
        try
        {
            for (int c0 = 0; c0 < cols; c0 += bandRows)
            {
                int k = Math.Min(bandRows, cols - c0);
                int bytes = checked((int)(k * bandRowBytes));
                byte[] band = own ?? pipe!.RentBuffer();
                Transposer.Transpose(source[(c0 * size)..], band.AsSpan(0, bytes), rows, k, size, cols);
                if (pipe is not null)
                {
                    pipe.WriteBuffer(band, bytes);
                }
                else
                {
                    destination.Write(band, 0, bytes);
                }
            }
        }
        finally
        {
            if (own is not null)
            {
                ArrayPool<byte>.Shared.Return(own);
            }
        }
    }

    private void WriteInOrder(Stream destination, Filler fill, bool copy)
    {
        int size = DType.SizeOf();
        int blockBytes = BlockBytesFor(destination);
        long step = blockBytes / size;
        if (destination is ExternalDataStream pipe)
        {
            if (copy && _input.CopySource() is var (path, offset, truncated))
            {
                pipe.CopyFrom(path, offset, ByteLength, truncated);
                return;
            }
            for (long e = 0; e < ElementCount; e += step)
            {
                int n = (int)Math.Min(step, ElementCount - e);
                byte[] buffer = pipe.RentBuffer();
                fill.Fill(e, n, buffer.AsSpan(0, n * size));
                pipe.WriteBuffer(buffer, n * size);
            }
            return;
        }
        byte[] block = ArrayPool<byte>.Shared.Rent(blockBytes);
        try
        {
            for (long e = 0; e < ElementCount; e += step)
            {
                int n = (int)Math.Min(step, ElementCount - e);
                var target = block.AsSpan(0, n * size);
                fill.Fill(e, n, target);
                destination.Write(target);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(block);
        }
    }

    private void WriteTransposed(Stream destination, long start, Filler fill)
    {
        int size = DType.SizeOf();
        long rows = _stored.Shape[0];
        int cols = checked((int)_stored.Shape[1]);
        if (rows == 0 || cols == 0)
        {
            return;
        }
        long rowBytes = (long)cols * size;
        int blockBytes = BlockBytesFor(destination);
        int blockRows = (int)Math.Clamp(blockBytes / rowBytes, 1, rows);
        if (blockRows < rows && !destination.CanSeek)
        {
            throw new InvalidOperationException($"{_stored.Name}: a transposed tensor over {blockBytes} bytes needs a seekable destination.");
        }
        // Always whole-block buffers, so every tensor reuses the same two pooled arrays (pages beyond a small tensor stay untouched).
        blockBytes = Math.Max(blockBytes, checked((int)(blockRows * rowBytes)));
        // A transposed block goes to the pipeline in its own buffer when it fits one, its pieces written behind.
        var pipe = destination as ExternalDataStream;
        pipe = pipe is not null && blockBytes <= pipe.BufferBytes ? pipe : null;
        byte[] block = ArrayPool<byte>.Shared.Rent(blockBytes);
        byte[]? own = pipe is null ? ArrayPool<byte>.Shared.Rent(blockBytes) : null;
        try
        {
            for (long r0 = 0; r0 < rows; r0 += blockRows)
            {
                int n = (int)Math.Min(blockRows, rows - r0);
                int bytes = checked((int)(n * rowBytes));
                fill.Fill(r0 * cols, n * cols, block.AsSpan(0, bytes));
                byte[] transposed = own ?? pipe!.RentBuffer();
                Transposer.Transpose(block.AsSpan(0, bytes), transposed.AsSpan(0, bytes), n, cols, size);
                if (pipe is not null)
                {
                    if (n == rows)
                    {
                        pipe.WriteBuffer(transposed, bytes);
                        continue;
                    }
                    long first = r0, total = rows;
                    pipe.WriteBufferPieces(transposed, bytes, (handle, data) =>
                    {
                        int length = n * size;
                        for (int c = 0; c < cols; c++)
                        {
                            RandomAccess.Write(handle, data.Slice(c * length, length), start + ((((long)c * total) + first) * size));
                        }
                    });
                    continue;
                }
                if (n == rows)
                {
                    destination.Write(transposed, 0, bytes);
                    continue;
                }
                // Output row c (source column c) holds this block's n values at [c·rows + r0, c·rows + r0 + n).
                int piece = n * size;
                for (int c = 0; c < cols; c++)
                {
                    destination.Position = start + ((((long)c * rows) + r0) * size);
                    destination.Write(transposed, c * piece, piece);
                }
            }
            destination.Position = start + ByteLength;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(block);
            if (own is not null)
            {
                ArrayPool<byte>.Shared.Return(own);
            }
        }
    }

    private float[] ReadAll(Reader reader)
    {
        if (_stored.ElementCount > Array.MaxLength)
        {
            throw OnnxLoraException.Invalid(reader.Describe, $"tensor '{_stored.Name}' has {_stored.ElementCount} elements, more than one fp32 array holds ({Array.MaxLength}); it cannot be rewritten (merged) in memory.");
        }
        // Pooled: the same few arrays serve every rewritten tensor of a model (not one large-object-heap array each).
        int count = (int)_stored.ElementCount;
        var values = ArrayPool<float>.Shared.Rent(count);
        reader.ReadDecoded(_stored.DType, values.AsSpan(0, count));
        return values;
    }

    /// <summary>Produces the output bytes of any element range: from the rewritten fp32 values, a plain read, or a read and a conversion.</summary>
    private sealed class Filler(Reader reader, DType stored, DType output, float[]? values) : IDisposable
    {
        private byte[]? _raw;
        private float[]? _floats;

        public void Fill(long element, int count, Span<byte> target)
        {
            int outSize = output.SizeOf(), inSize = stored.SizeOf();
            if (values is null && stored == output)
            {
                reader.Read(element * inSize, target[..(count * inSize)]);
                return;
            }
            for (int done = 0; done < count; done += ConvertElements)
            {
                int n = Math.Min(ConvertElements, count - done);
                var part = target.Slice(done * outSize, n * outSize);
                if (values is not null)
                {
                    TensorBytes.Encode(output, values.AsSpan((int)(element + done), n), part);
                    continue;
                }
                _raw ??= ArrayPool<byte>.Shared.Rent(ConvertElements * inSize);
                _floats ??= ArrayPool<float>.Shared.Rent(ConvertElements);
                reader.Read((element + done) * inSize, _raw.AsSpan(0, n * inSize));
                FloatCodec.Decode(stored, _raw.AsSpan(0, n * inSize), _floats.AsSpan(0, n));
                FloatCodec.Encode(output, _floats.AsSpan(0, n), part);
            }
        }

        public void Dispose()
        {
            if (_raw is not null)
            {
                ArrayPool<byte>.Shared.Return(_raw);
            }
            if (_floats is not null)
            {
                ArrayPool<float>.Shared.Return(_floats);
            }
        }
    }

    /// <summary>Where the stored bytes are.</summary>
    internal abstract class Input
    {
        public abstract Reader Open();

        /// <summary>The file, offset and truncation error of stored bytes that can be copied file to file by the kernel; null in memory.</summary>
        public virtual (string Path, long Offset, Func<Exception> Truncated)? CopySource() => null;
    }

    /// <summary>Reads stored bytes at offsets relative to the tensor's first byte.</summary>
    internal abstract class Reader : IDisposable
    {
        /// <summary>Names the source in error messages.</summary>
        public abstract string Describe { get; }

        public abstract void Read(long offset, Span<byte> destination);

        /// <summary>The whole tensor (stored as <paramref name="dtype"/>) decoded to fp32, a chunk at a time.</summary>
        public virtual void ReadDecoded(DType dtype, Span<float> destination)
        {
            int size = dtype.SizeOf();
            byte[] raw = ArrayPool<byte>.Shared.Rent(ConvertElements * size);
            try
            {
                for (int e = 0; e < destination.Length; e += ConvertElements)
                {
                    int n = Math.Min(ConvertElements, destination.Length - e);
                    Read((long)e * size, raw.AsSpan(0, n * size));
                    FloatCodec.Decode(dtype, raw.AsSpan(0, n * size), destination.Slice(e, n));
                }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(raw);
            }
        }

        public virtual void Dispose()
        {
        }
    }

    /// <summary>Bytes in memory.</summary>
    internal sealed class MemoryInput(ReadOnlyMemory<byte> data) : Input
    {
        public override Reader Open() => new MemoryReader(data);

        private sealed class MemoryReader(ReadOnlyMemory<byte> data) : Reader
        {
            public override string Describe => "<memory>";

            public override void Read(long offset, Span<byte> destination) => data.Span.Slice(checked((int)offset), destination.Length).CopyTo(destination);
        }
    }

    /// <summary>
    /// A tensor of a safetensors file, read with positioned reads on a handle of its own (not through the
    /// file's memory mapping, whose pages would stay resident in this process).
    /// </summary>
    internal sealed class FileInput(SafetensorsFile file, TensorInfo tensor) : Input
    {
        public override Reader Open() => new FileReader(file, tensor);

        public override (string Path, long Offset, Func<Exception> Truncated)? CopySource()
        {
            long start = file.DataStart + tensor.DataOffset;
            return (file.Path, start, () => FormatThrow.Invalid(file.Path, $"tensor '{tensor.Name}'", "the file ends before the tensor does",
                $"{tensor.ByteLength} bytes from byte {start} (the file was truncated after it was opened)"));
        }

        private sealed class FileReader : Reader
        {
            private readonly SafeFileHandle _handle;
            private readonly string _path;
            private readonly TensorInfo _tensor;
            private readonly long _start;

            public FileReader(SafetensorsFile file, TensorInfo tensor)
            {
                _path = file.Path;
                _tensor = tensor;
                _start = file.DataStart + tensor.DataOffset;
                _handle = File.OpenHandle(file.Path, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.SequentialScan);
            }

            public override string Describe => _path;

            public override void Read(long offset, Span<byte> destination)
            {
                if (offset < 0 || offset + destination.Length > _tensor.ByteLength)
                {
                    throw new ArgumentOutOfRangeException(nameof(offset), $"read [{offset}, {offset + destination.Length}) outside tensor '{_tensor.Name}' ({_tensor.ByteLength} bytes)");
                }
                while (!destination.IsEmpty)
                {
                    int read = RandomAccess.Read(_handle, destination, _start + offset);
                    if (read == 0)
                    {
                        throw FormatThrow.Invalid(_path, $"tensor '{_tensor.Name}'", $"the file ends at byte {_start + offset}",
                            $"{_tensor.ByteLength} bytes from byte {_start} (the file was truncated after it was opened)");
                    }
                    offset += read;
                    destination = destination[read..];
                }
            }

            /// <summary>Read and decoded on all cores (<see cref="TensorBytes.ReadDecoded"/>).</summary>
            public override void ReadDecoded(DType dtype, Span<float> destination)
            {
                if ((long)destination.Length * dtype.SizeOf() != _tensor.ByteLength)
                {
                    throw new ArgumentException($"tensor '{_tensor.Name}' has {_tensor.ByteLength} bytes, not {destination.Length} {dtype} values", nameof(destination));
                }
                try
                {
                    TensorBytes.ReadDecoded(_handle, _start, dtype, destination);
                }
                catch (EndOfStreamException)
                {
                    throw FormatThrow.Invalid(_path, $"tensor '{_tensor.Name}'", "the file ends before the tensor does",
                        $"{_tensor.ByteLength} bytes from byte {_start} (the file was truncated after it was opened)");
                }
            }

            public override void Dispose() => _handle.Dispose();
        }
    }
}
