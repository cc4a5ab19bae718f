using System.Buffers;
using System.Diagnostics.CodeAnalysis;
using System.Runtime.ExceptionServices;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using OnnxLora.Core.Peft;

namespace OnnxLora.Core.IO;

/// <summary>
/// A floating-point tensor's stored bytes to fp32 values and back, on all cores: the read-and-decode and the
/// encode-and-write halves of every streamed merge. Both work in chunks of <see cref="ChunkBytes"/>, so no byte array
/// holds a whole tensor (tensors over 2 GiB of bytes pass), and the conversions are <see cref="FloatCodec"/>'s, so the
/// values and bytes are exactly those of a one-chunk-at-a-time loop.
/// </summary>
public static class TensorBytes
{
    /// <summary>Bytes per chunk: each core reads and decodes one at a time.</summary>
    public const int ChunkBytes = 4 << 20;

    /// <summary>
    /// Reads the <paramref name="dtype"/> bytes at <paramref name="offset"/> of <paramref name="handle"/> (positioned reads, so
    /// several threads read at once) and decodes them into <paramref name="destination"/>, chunks in parallel.
    /// </summary>
    /// <exception cref="EndOfStreamException">The file ends before the tensor does.</exception>
    public static unsafe void ReadDecoded(SafeFileHandle handle, long offset, DType dtype, Span<float> destination)
    {
        int size = dtype.SizeOf(), perChunk = ChunkBytes / size;
        int chunks = (int)(((long)destination.Length + perChunk - 1) / perChunk);
        fixed (float* start = destination)
        {
            float* values = start;
            int count = destination.Length;
            Run(chunks, c =>
            {
                int first = c * perChunk, n = Math.Min(perChunk, count - first);
                byte[] buffer = ArrayPool<byte>.Shared.Rent(n * size);
                try
                {
                    FileRange.ReadExactly(handle, buffer.AsSpan(0, n * size), offset + ((long)first * size));
                    FloatCodec.Decode(dtype, buffer.AsSpan(0, n * size), new Span<float>(values + first, n));
                }
                finally
                {
                    ArrayPool<byte>.Shared.Return(buffer);
                }
            });
        }
    }

    /// <summary>Fills a whole tensor's fp32 values (reads and merges them into <paramref name="values"/>).</summary>
    public delegate void TensorFiller(Span<float> values);

    /// <summary>
    /// One whole tensor of <paramref name="count"/> values, filled by <paramref name="fill"/>, encoded as
    /// <paramref name="dtype"/> and queued on <paramref name="behind"/> as <paramref name="write"/>(byte offset in the tensor,
    /// bytes), in order. 2- and 4-byte types are encoded in place (<see cref="EncodeInPlace"/>) and the whole buffer goes to
    /// the writer thread (<see cref="WriteBehind.RentTensorBuffer"/>), so the next tensor is filled while this one is
    /// written; wider types go through the pipeline's chunk buffers (<see cref="EncodeBehind"/>). With
    /// <paramref name="refuseOverflow"/>, a value that overflows the encoding throws what it returns for (index, fp32
    /// value) before anything of the tensor is queued (in place, the tensor is filled again to name the value, which the
    /// encoding overwrote); without it overflowing values are written as ±Inf.
    /// </summary>
    /// <exception cref="Exception">An earlier write failed: its exception, as thrown; or <paramref name="refuseOverflow"/>'s.</exception>
    public static void EncodeWholeBehind(DType dtype, int count, WriteBehind behind, TensorFiller fill, WriteBehind.PieceWriter write,
        Func<long, float, Exception>? refuseOverflow)
    {
        ArgumentNullException.ThrowIfNull(behind);
        ArgumentNullException.ThrowIfNull(fill);
        ArgumentNullException.ThrowIfNull(write);
        int size = dtype.SizeOf();
        bool inPlace = size <= sizeof(float);
        float[] buffer = behind.RentTensorBuffer(count);
        bool handedOver = false;
        try
        {
            var values = buffer.AsSpan(0, count);
            fill(values);
            long overflow = inPlace
                ? EncodeInPlace(dtype, values)
                : EncodeBehind(dtype, values, behind, (first, data) => write(first * size, data.Span));
            if (refuseOverflow is not null && overflow >= 0)
            {
                if (inPlace)
                {
                    fill(values);
                }
                throw refuseOverflow(overflow, values[(int)overflow]);
            }
            if (inPlace)
            {
                behind.EnqueueTensorWrite(buffer, (long)count * size, write);
                handedOver = true;
            }
            else if (count == 0)
            {
                behind.Enqueue(() => write(0, []));
            }
        }
        finally
        {
            if (!handedOver)
            {
                behind.ReturnTensorBuffer(buffer);
            }
        }
    }

    /// <summary>fp32 values per block of <see cref="MergeRowsBehind"/> (512 KiB: the block, its input bytes and a slice of the
    /// packed factor stay in a core's level-2 cache).</summary>
    private const int RowBlockValues = 1 << 17;

    /// <summary>The longest row <see cref="MergeRowsBehind"/> takes (a block holds at least one row).</summary>
    private const int MaxRowValues = 1 << 24;

    /// <summary>
    /// True when <see cref="MergeRows"/> takes a tensor of <paramref name="elementCount"/> values merged by <paramref name="rows"/>
    /// (the same count) into <paramref name="output"/>: at most 4 bytes a value, rows of at most <see cref="MaxRowValues"/>, the
    /// encoded tensor within one byte span. Other tensors are merged whole (<see cref="EncodeWholeBehind"/>).
    /// </summary>
    public static bool FitsRowMerge([NotNullWhen(true)] RowUpdate? rows, long elementCount, DType output) =>
        rows is not null && (long)rows.Rows * rows.Cols == elementCount && output.SizeOf() <= sizeof(float) && rows.Cols <= MaxRowValues
        && elementCount * output.SizeOf() <= Array.MaxLength;

    /// <summary>Reads stored bytes of one tensor into <paramref name="destination"/>, from byte <paramref name="offset"/> of the tensor.</summary>
    public delegate void TensorReader(long offset, Span<byte> destination);

    /// <summary>
    /// What a checked <see cref="MergeRows"/> found: the lowest index whose merged value is NaN or ±Inf, and the lowest whose
    /// finite value overflowed the encoding (−1 when none), with their fp32 values.
    /// </summary>
    public readonly record struct RowMergeFaults(long NonFinite, float NonFiniteValue, long Overflow, float OverflowValue);

    /// <summary>
    /// One tensor of <paramref name="update"/>'s shape, stored as <paramref name="input"/> (read by <paramref name="read"/>), merged
    /// and encoded as <paramref name="output"/> into <paramref name="destination"/> in the same row-major layout. Each core reads a
    /// block of whole rows (about <see cref="RowBlockValues"/> values), decodes, merges, checks and encodes it while it is in its
    /// cache, so no fp32 copy of the tensor is made and passed over once per step (that memory traffic was a third of a
    /// merge's CPU time). Values and bytes are those of reading, <see cref="RowUpdate.Apply"/> on the whole tensor and
    /// encoding. With <paramref name="check"/>, the faults found (else none are looked for).
    /// </summary>
    public static unsafe RowMergeFaults MergeRows(TensorReader read, DType input, DType output, RowUpdate update, Span<byte> destination, bool check)
    {
        ArgumentNullException.ThrowIfNull(read);
        ArgumentNullException.ThrowIfNull(update);
        int inSize = input.SizeOf(), outSize = output.SizeOf(), rows = update.Rows, cols = update.Cols;
        if (!FitsRowMerge(update, (long)rows * cols, output))
        {
            throw new ArgumentException($"[{rows}, {cols}] {output}: not a tensor merged by rows (see FitsRowMerge): merge it whole", nameof(update));
        }
        if (destination.Length != (long)rows * cols * outSize)
        {
            throw new ArgumentException($"[{rows}, {cols}] {output} values take {(long)rows * cols * outSize} bytes, the destination has {destination.Length}", nameof(destination));
        }
        int blockRows = Math.Clamp(RowBlockValues / Math.Max(cols, 1), 1, Math.Max(rows, 1));
        int blocks = (rows + blockRows - 1) / blockRows;
        long nonFinite = long.MaxValue, overflow = long.MaxValue;
        float nonFiniteValue = 0, overflowValue = 0;
        var gate = new object();
        fixed (byte* target = destination)
        {
            byte* to = target;
            Run(blocks, b =>
            {
                int firstRow = b * blockRows, n = Math.Min(blockRows, rows - firstRow) * cols;
                long first = (long)firstRow * cols;
                float[] values = ArrayPool<float>.Shared.Rent(n);
                byte[] stored = ArrayPool<byte>.Shared.Rent(n * inSize);
                try
                {
                    var block = values.AsSpan(0, n);
                    read(first * inSize, stored.AsSpan(0, n * inSize));
                    FloatCodec.Decode(input, stored.AsSpan(0, n * inSize), block);
                    update.Apply(block, firstRow);
                    long bad = check ? FloatCodec.FirstNonFinite(block) : -1;
                    long over = FloatCodec.Encode(output, block, new Span<byte>(to + (first * outSize), n * outSize));
                    if (check && (bad >= 0 || over >= 0))
                    {
                        lock (gate)
                        {
                            if (bad >= 0 && first + bad < nonFinite)
                            {
                                (nonFinite, nonFiniteValue) = (first + bad, block[(int)bad]);
                            }
                            if (over >= 0 && first + over < overflow)
                            {
                                (overflow, overflowValue) = (first + over, block[(int)over]);
                            }
                        }
                    }
                }
                finally
                {
                    ArrayPool<float>.Shared.Return(values);
                    ArrayPool<byte>.Shared.Return(stored);
                }
            });
        }
        return new RowMergeFaults(nonFinite == long.MaxValue ? -1 : nonFinite, nonFiniteValue, overflow == long.MaxValue ? -1 : overflow, overflowValue);
    }

    /// <summary>
    /// <see cref="MergeRows"/> from <paramref name="handle"/> at <paramref name="offset"/> into a whole-tensor buffer of
    /// <paramref name="behind"/> (<paramref name="output"/> of 2 or 4 bytes), queued there as <paramref name="write"/>(byte offset,
    /// bytes) like <see cref="EncodeWholeBehind"/>, so the next tensor is merged while this one is written. With
    /// <paramref name="refuse"/>, the first value that is not finite after merging, else the first that overflows the
    /// encoding, throws what it returns for (index, fp32 value), and nothing is queued; without it such values are written.
    /// </summary>
    /// <exception cref="EndOfStreamException">The file ends before the tensor does.</exception>
    public static void MergeRowsBehind(SafeFileHandle handle, long offset, DType input, DType output, RowUpdate update, WriteBehind behind,
        WriteBehind.PieceWriter write, Func<long, float, Exception>? refuse)
    {
        ArgumentNullException.ThrowIfNull(handle);
        ArgumentNullException.ThrowIfNull(update);
        ArgumentNullException.ThrowIfNull(behind);
        ArgumentNullException.ThrowIfNull(write);
        long bytes = (long)update.Rows * update.Cols * output.SizeOf();
        if (!FitsRowMerge(update, (long)update.Rows * update.Cols, output))
        {
            throw new ArgumentException($"[{update.Rows}, {update.Cols}] {output}: not a tensor merged by rows (see FitsRowMerge): merge it with EncodeWholeBehind", nameof(update));
        }
        float[] buffer = behind.RentTensorBuffer(checked((int)((bytes + sizeof(float) - 1) / sizeof(float))));
        bool handedOver = false;
        try
        {
            var faults = MergeRows((at, destination) => FileRange.ReadExactly(handle, destination, offset + at), input, output, update,
                MemoryMarshal.AsBytes(buffer.AsSpan())[..(int)bytes], check: refuse is not null);
            if (refuse is not null && faults.NonFinite >= 0)
            {
                throw refuse(faults.NonFinite, faults.NonFiniteValue);
            }
            if (refuse is not null && faults.Overflow >= 0)
            {
                throw refuse(faults.Overflow, faults.OverflowValue);
            }
            behind.EnqueueTensorWrite(buffer, bytes, write);
            handedOver = true;
        }
        finally
        {
            if (!handedOver)
            {
                behind.ReturnTensorBuffer(buffer);
            }
        }
    }

    /// <summary>
    /// Encodes <paramref name="values"/> as <paramref name="dtype"/> into <paramref name="behind"/>'s buffers, a few chunks at a
    /// time in parallel, and queues <paramref name="write"/>(first element, bytes) for each chunk in order. Returns the index
    /// of the first value that overflowed the encoding (finite in fp32, ±Inf after; see <see cref="FloatCodec.Encode"/>), or
    /// -1; chunks are still written after one overflows, so a caller that refuses overflow throws and discards the output.
    /// </summary>
    public static unsafe long EncodeBehind(DType dtype, ReadOnlySpan<float> values, WriteBehind behind, Action<long, ReadOnlyMemory<byte>> write)
    {
        ArgumentNullException.ThrowIfNull(behind);
        ArgumentNullException.ThrowIfNull(write);
        int size = dtype.SizeOf(), perChunk = behind.BufferBytes / size;
        int count = values.Length;
        int chunks = (int)(((long)count + perChunk - 1) / perChunk);
        // At most as many buffers at once as the pipeline lets wait, so renting a group never waits on itself.
        int group = Math.Max(1, Math.Min(Environment.ProcessorCount, behind.Capacity));
        var buffers = new byte[group][];
        var overflows = new long[group];
        long first = -1;
        fixed (float* start = values)
        {
            float* source = start;
            for (int g = 0; g < chunks; g += group)
            {
                int inGroup = Math.Min(group, chunks - g);
                for (int i = 0; i < inGroup; i++)
                {
                    buffers[i] = behind.RentBuffer();
                }
                Run(inGroup, i =>
                {
                    int at = (g + i) * perChunk, n = Math.Min(perChunk, count - at);
                    long overflow = FloatCodec.Encode(dtype, new ReadOnlySpan<float>(source + at, n), buffers[i].AsSpan(0, n * size));
                    overflows[i] = overflow < 0 ? -1 : at + overflow;
                });
                for (int i = 0; i < inGroup; i++)
                {
                    long at = (long)(g + i) * perChunk;
                    int n = (int)Math.Min(perChunk, count - at);
                    if (first < 0 && overflows[i] >= 0)
                    {
                        first = overflows[i];
                    }
                    behind.EnqueueWrite(buffers[i], n * size, data => write(at, data));
                }
            }
        }
        return first;
    }

    /// <summary>
    /// Encodes <paramref name="values"/> as <paramref name="dtype"/> into <paramref name="destination"/>, chunks in parallel; returns
    /// the index of the first value that overflowed the encoding, or -1 (as <see cref="FloatCodec.Encode"/>).
    /// </summary>
    public static unsafe long Encode(DType dtype, ReadOnlySpan<float> values, Span<byte> destination)
    {
        int size = dtype.SizeOf(), perChunk = ChunkBytes / size, count = values.Length;
        if (destination.Length < (long)count * size)
        {
            throw new ArgumentException($"{count} {dtype} values need {(long)count * size} bytes, the destination has {destination.Length}", nameof(destination));
        }
        int chunks = (int)(((long)count + perChunk - 1) / perChunk);
        var overflows = new long[chunks];
        fixed (float* source = values)
        fixed (byte* target = destination)
        {
            float* from = source;
            byte* to = target;
            Run(chunks, c =>
            {
                int first = c * perChunk, n = Math.Min(perChunk, count - first);
                long overflow = FloatCodec.Encode(dtype, new ReadOnlySpan<float>(from + first, n), new Span<byte>(to + ((long)first * size), n * size));
                overflows[c] = overflow < 0 ? -1 : first + overflow;
            });
        }
        foreach (long overflow in overflows)
        {
            if (overflow >= 0)
            {
                return overflow;
            }
        }
        return -1;
    }

    /// <summary>
    /// Encodes <paramref name="values"/> as the 2- or 4-byte <paramref name="dtype"/> in their own memory: element i's bytes end up at
    /// [i·size, (i + 1)·size) of the span's bytes (fp32 is left as it is), so a caller that no longer needs the fp32 values gets the
    /// encoded tensor without a second buffer of its size. Returns the index of the first value that overflowed, or -1 (as
    /// <see cref="FloatCodec.Encode"/>, whose conversion it uses). Chunks run on all cores in waves — chunk 0, then chunks
    /// [m, 2m) for m = 1, 2, 4, …: chunk j's output ends at 2(j + 1)·C bytes, at or below where the input of chunk m begins
    /// (4m·C), so a wave only overwrites input that earlier waves have encoded. Within a chunk, a slice's output lies below its
    /// input except for the tensor's first slice, which is copied out before it is encoded, so the conversion never reads bytes it has written.
    /// </summary>
    public static unsafe long EncodeInPlace(DType dtype, Span<float> values)
    {
        int size = dtype.SizeOf();
        if (size == 4)
        {
            return dtype == DType.F32 ? -1 : throw new ArgumentException($"dtype {dtype} is not a floating-point type", nameof(dtype));
        }
        if (size != 2)
        {
            throw new ArgumentException($"{dtype} values take more bytes than fp32: they cannot be encoded in place", nameof(dtype));
        }
        const int Slice = 4096;
        int perChunk = ChunkBytes / sizeof(float), count = values.Length;
        int chunks = (int)(((long)count + perChunk - 1) / perChunk);
        var overflows = new long[chunks];
        fixed (float* start = values)
        {
            float* from = start;
            byte* to = (byte*)start;
            void Chunk(int c)
            {
                int first = c * perChunk, n = Math.Min(perChunk, count - first);
                overflows[c] = -1;
                Span<float> scratch = stackalloc float[Slice];
                for (int done = 0; done < n; done += Slice)
                {
                    int m = Math.Min(Slice, n - done);
                    long at = (long)first + done;
                    // The output [2·at, 2·(at + m)) bytes overlaps the slice's own input [4·at, 4·(at + m)) only when m > at (the
                    // tensor's first slice): only that one is copied out first.
                    scoped ReadOnlySpan<float> input = new(from + at, m);
                    if (m > at)
                    {
                        input.CopyTo(scratch);
                        input = scratch[..m];
                    }
                    long overflow = FloatCodec.Encode(dtype, input, new Span<byte>(to + (at * size), m * size));
                    if (overflow >= 0 && overflows[c] < 0)
                    {
                        overflows[c] = first + done + overflow;
                    }
                }
            }
            if (chunks > 0)
            {
                Chunk(0);
            }
            for (int m = 1; m < chunks; m *= 2)
            {
                int wave = m;
                Run(Math.Min(wave, chunks - wave), i => Chunk(wave + i));
            }
        }
        foreach (long overflow in overflows)
        {
            if (overflow >= 0)
            {
                return overflow;
            }
        }
        return -1;
    }

    /// <summary>Runs <paramref name="body"/>(0 … count − 1), in parallel when there is more than one; the first exception is rethrown as thrown.</summary>
    private static void Run(int count, Action<int> body)
    {
        if (count == 1 || Environment.ProcessorCount == 1)
        {
            for (int i = 0; i < count; i++)
            {
                body(i);
            }
            return;
        }
        try
        {
            Parallel.For(0, count, body);
        }
        catch (AggregateException e) when (e.InnerExceptions.Count > 0)
        {
            ExceptionDispatchInfo.Throw(e.InnerExceptions[0]);
        }
    }
}
