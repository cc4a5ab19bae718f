using System.Buffers;
using Microsoft.Win32.SafeHandles;
using OnnxLora.Core.Internals;
using OnnxLora.Core.IO;
using OnnxLora.Core.Safetensors;

namespace OnnxLora.Core.Onnx.Internals;

/// <summary>
/// Streams one stored float tensor into an ONNX data stream: read slice by slice, converted to the
/// output type (via fp32, nearest-even, as <see cref="FloatCodec"/> does; a plain copy when the types
/// match and nothing is rewritten), optionally rewritten whole in fp32 first (a merge), and transposed
/// block by block: each block of source rows is transposed in memory and its pieces are written at
/// their places in the output range, so no block holds more than <see cref="BlockBytes"/> bytes.
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
    private readonly Action<Span<float>>? _rewrite;
    private readonly int _blockBytes;

    /// <param name="input">Where the stored bytes are.</param>
    /// <param name="stored">The stored tensor's name, type and shape.</param>
    /// <param name="dtype">The output type.</param>
    /// <param name="transpose">Write the transpose of the 2-D tensor.</param>
    /// <param name="rewrite">Changes the whole tensor in fp32 (stored layout) before it is converted.</param>
    /// <param name="blockBytes">Output bytes per block; smaller only in tests, to exercise the block paths on small tensors.</param>
    public TensorStreamer(Input input, TensorSpec stored, DType dtype, bool transpose, Action<Span<float>>? rewrite, int blockBytes = BlockBytes)
        : base(dtype, transpose ? TransposedShape(stored) : stored.Shape)
    {
        _blockBytes = blockBytes;
        _input = input;
        _stored = stored;
        _transpose = transpose;
        _rewrite = rewrite;
    }

    private static long[] TransposedShape(TensorSpec stored) => stored.Shape.Count == 2
        ? [stored.Shape[1], stored.Shape[0]]
        : throw new ArgumentException($"{stored.Name}: only 2-D tensors can be stored transposed; found {stored.Shape.Count} dims.", nameof(stored));

    public override void WriteTo(Stream destination)
    {
        ArgumentNullException.ThrowIfNull(destination);
        long start = destination.CanSeek ? destination.Position : 0;
        using var reader = _input.Open();
        float[]? values = null;
        if (_rewrite is not null)
        {
            values = ReadAll(reader);
            _rewrite(values.AsSpan(0, (int)_stored.ElementCount));
        }
        var fill = new Filler(reader, _stored.DType, DType, values);
        try
        {
            if (_transpose)
            {
                WriteTransposed(destination, start, fill);
            }
            else
            {
                WriteInOrder(destination, fill);
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

    private void WriteInOrder(Stream destination, Filler fill)
    {
        int size = DType.SizeOf();
        long step = _blockBytes / size;
        byte[] block = ArrayPool<byte>.Shared.Rent(_blockBytes);
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
        int blockRows = (int)Math.Clamp(_blockBytes / rowBytes, 1, rows);
        if (blockRows < rows && !destination.CanSeek)
        {
            throw new InvalidOperationException($"{_stored.Name}: a transposed tensor over {_blockBytes} bytes needs a seekable destination.");
        }
        // Always whole-block buffers, so every tensor reuses the same two pooled arrays (pages beyond a small tensor stay untouched).
        int blockBytes = Math.Max(_blockBytes, checked((int)(blockRows * rowBytes)));
        byte[] block = ArrayPool<byte>.Shared.Rent(blockBytes);
        byte[] transposed = ArrayPool<byte>.Shared.Rent(blockBytes);
        try
        {
            for (long r0 = 0; r0 < rows; r0 += blockRows)
            {
                int n = (int)Math.Min(blockRows, rows - r0);
                int bytes = checked((int)(n * rowBytes));
                fill.Fill(r0 * cols, n * cols, block.AsSpan(0, bytes));
                Transposer.Transpose(block.AsSpan(0, bytes), transposed.AsSpan(0, bytes), n, cols, size);
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
            ArrayPool<byte>.Shared.Return(transposed);
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
