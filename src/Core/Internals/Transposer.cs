using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace OnnxLora.Core.Internals;

/// <summary>
/// Cache-blocked transpose of a row-major matrix of 2-, 4- or 8-byte elements, on all cores for large matrices. 2- and
/// 4-byte elements (fp16/bf16, fp32: every exported weight) go through 8×8 and 4×4 register transposes (SSE2 unpacks)
/// where the CPU has them — measured 4× the element-at-a-time loop on the development machine — and element by element
/// at the edges. Only bits move, so every path gives the same bytes.
/// </summary>
internal static class Transposer
{
    /// <summary>Source rows per band (a band is one work item) and source columns per tile within it.</summary>
    private const int Block = 64, TileColumns = 128;

    /// <summary>Matrices of at least this many elements are transposed on all cores.</summary>
    private const long ParallelElements = 1 << 20;

    /// <summary>destination [cols, rows] = sourceᵀ for source [rows, cols].</summary>
    public static void Transpose(ReadOnlySpan<byte> source, Span<byte> destination, int rows, int cols, int elementSize) =>
        Transpose(source, destination, rows, cols, elementSize, cols);

    /// <summary>
    /// destination [cols, rows] = sourceᵀ for a source of <paramref name="rows"/> rows of <paramref name="cols"/> elements each
    /// <paramref name="sourceStride"/> elements apart: with a stride wider than <paramref name="cols"/>, a band of columns of a
    /// larger matrix (source starting at the band's first column), so a transposed matrix can be produced a band of its rows
    /// at a time.
    /// </summary>
    public static void Transpose(ReadOnlySpan<byte> source, Span<byte> destination, int rows, int cols, int elementSize, int sourceStride)
    {
        switch (elementSize)
        {
            case 2: Run(MemoryMarshal.Cast<byte, ushort>(source), MemoryMarshal.Cast<byte, ushort>(destination), rows, cols, sourceStride); break;
            case 4: Run(MemoryMarshal.Cast<byte, uint>(source), MemoryMarshal.Cast<byte, uint>(destination), rows, cols, sourceStride); break;
            case 8: Run(MemoryMarshal.Cast<byte, ulong>(source), MemoryMarshal.Cast<byte, ulong>(destination), rows, cols, sourceStride); break;
            default: throw new ArgumentOutOfRangeException(nameof(elementSize), elementSize, "expected 2, 4 or 8");
        }
    }

    private static unsafe void Run<T>(ReadOnlySpan<T> source, Span<T> destination, int rows, int cols, int stride) where T : unmanaged
    {
        long needed = rows == 0 || cols == 0 ? 0 : ((long)(rows - 1) * stride) + cols;
        if (stride < cols || source.Length < needed || destination.Length != (long)rows * cols || (stride == cols && source.Length != needed))
        {
            throw new ArgumentException($"transpose: {source.Length} → {destination.Length} elements for [{rows}, {cols}] with source stride {stride}");
        }
        int bands = (rows + Block - 1) / Block;
        fixed (T* from = source, to = destination)
        {
            T* s = from, d = to;
            // Bands of Block source rows write disjoint destination elements, so they run on all cores when the matrix is large.
            if ((long)rows * cols >= ParallelElements && bands > 1 && Environment.ProcessorCount > 1)
            {
                Parallel.For(0, bands, band => Band(s, d, rows, cols, stride, band * Block));
            }
            else
            {
                for (int band = 0; band < bands; band++)
                {
                    Band(s, d, rows, cols, stride, band * Block);
                }
            }
        }
    }

    /// <summary>
    /// Source rows [r0, r0 + Block): whole register blocks first, then the edge rows and columns element by element. Fully
    /// optimised from the first call (tier 0 would call each SSE2 intrinsic as a function).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void Band<T>(T* source, T* destination, int rows, int cols, long stride, int r0) where T : unmanaged
    {
        int r1 = Math.Min(r0 + Block, rows);
        int side = !Sse2.IsSupported ? 0 : sizeof(T) == 2 ? 8 : sizeof(T) == 4 ? 4 : 0;
        int fullRows = r0, fullCols = 0;
        if (side > 0)
        {
            fullRows = r0 + ((r1 - r0) / side * side);
            fullCols = cols / side * side;
            for (int c0 = 0; c0 < fullCols; c0 += TileColumns)
            {
                int c1 = Math.Min(c0 + TileColumns, fullCols);
                for (int r = r0; r < fullRows; r += side)
                {
                    for (int c = c0; c < c1; c += side)
                    {
                        if (side == 8)
                        {
                            Block8((ushort*)source + (r * stride) + c, stride, (ushort*)destination + ((long)c * rows) + r, rows);
                        }
                        else
                        {
                            Block4((uint*)source + (r * stride) + c, stride, (uint*)destination + ((long)c * rows) + r, rows);
                        }
                    }
                }
            }
        }
        // Columns [0, fullCols) of rows [fullRows, r1), then columns [fullCols, cols) of every row in the band.
        Elements(source, destination, rows, stride, fullRows, r1, 0, fullCols);
        Elements(source, destination, rows, stride, r0, r1, fullCols, cols);
    }

    /// <summary>Element by element over rows [r0, r1) × columns [c0, c1), in tiles; destination rows written contiguously.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void Elements<T>(T* source, T* destination, int rows, long stride, int r0, int r1, int c0, int c1) where T : unmanaged
    {
        for (int t0 = c0; t0 < c1; t0 += Block)
        {
            int t1 = Math.Min(t0 + Block, c1);
            for (int c = t0; c < t1; c++)
            {
                T* target = destination + ((long)c * rows);
                T* column = source + c;
                for (int r = r0; r < r1; r++)
                {
                    target[r] = column[r * stride];
                }
            }
        }
    }

    /// <summary>An 8×8 block of 16-bit elements: 8 rows in, unpacked 16 → 32 → 64 bits, 8 rows out.</summary>
    private static unsafe void Block8(ushort* s, long sourceStride, ushort* d, long destinationStride)
    {
        var a0 = Sse2.LoadVector128(s);
        var a1 = Sse2.LoadVector128(s + sourceStride);
        var a2 = Sse2.LoadVector128(s + (2 * sourceStride));
        var a3 = Sse2.LoadVector128(s + (3 * sourceStride));
        var a4 = Sse2.LoadVector128(s + (4 * sourceStride));
        var a5 = Sse2.LoadVector128(s + (5 * sourceStride));
        var a6 = Sse2.LoadVector128(s + (6 * sourceStride));
        var a7 = Sse2.LoadVector128(s + (7 * sourceStride));
        var b0 = Sse2.UnpackLow(a0, a1).AsUInt32();
        var b1 = Sse2.UnpackHigh(a0, a1).AsUInt32();
        var b2 = Sse2.UnpackLow(a2, a3).AsUInt32();
        var b3 = Sse2.UnpackHigh(a2, a3).AsUInt32();
        var b4 = Sse2.UnpackLow(a4, a5).AsUInt32();
        var b5 = Sse2.UnpackHigh(a4, a5).AsUInt32();
        var b6 = Sse2.UnpackLow(a6, a7).AsUInt32();
        var b7 = Sse2.UnpackHigh(a6, a7).AsUInt32();
        var c0 = Sse2.UnpackLow(b0, b2).AsUInt64();
        var c1 = Sse2.UnpackHigh(b0, b2).AsUInt64();
        var c2 = Sse2.UnpackLow(b1, b3).AsUInt64();
        var c3 = Sse2.UnpackHigh(b1, b3).AsUInt64();
        var c4 = Sse2.UnpackLow(b4, b6).AsUInt64();
        var c5 = Sse2.UnpackHigh(b4, b6).AsUInt64();
        var c6 = Sse2.UnpackLow(b5, b7).AsUInt64();
        var c7 = Sse2.UnpackHigh(b5, b7).AsUInt64();
        Sse2.Store(d, Sse2.UnpackLow(c0, c4).AsUInt16());
        Sse2.Store(d + destinationStride, Sse2.UnpackHigh(c0, c4).AsUInt16());
        Sse2.Store(d + (2 * destinationStride), Sse2.UnpackLow(c1, c5).AsUInt16());
        Sse2.Store(d + (3 * destinationStride), Sse2.UnpackHigh(c1, c5).AsUInt16());
        Sse2.Store(d + (4 * destinationStride), Sse2.UnpackLow(c2, c6).AsUInt16());
        Sse2.Store(d + (5 * destinationStride), Sse2.UnpackHigh(c2, c6).AsUInt16());
        Sse2.Store(d + (6 * destinationStride), Sse2.UnpackLow(c3, c7).AsUInt16());
        Sse2.Store(d + (7 * destinationStride), Sse2.UnpackHigh(c3, c7).AsUInt16());
    }

    /// <summary>A 4×4 block of 32-bit elements: 4 rows in, unpacked 32 → 64 bits, 4 rows out.</summary>
    private static unsafe void Block4(uint* s, long sourceStride, uint* d, long destinationStride)
    {
        var a0 = Sse2.LoadVector128(s);
        var a1 = Sse2.LoadVector128(s + sourceStride);
        var a2 = Sse2.LoadVector128(s + (2 * sourceStride));
        var a3 = Sse2.LoadVector128(s + (3 * sourceStride));
        var t0 = Sse2.UnpackLow(a0, a1).AsUInt64();
        var t1 = Sse2.UnpackLow(a2, a3).AsUInt64();
        var t2 = Sse2.UnpackHigh(a0, a1).AsUInt64();
        var t3 = Sse2.UnpackHigh(a2, a3).AsUInt64();
        Sse2.Store(d, Sse2.UnpackLow(t0, t1).AsUInt32());
        Sse2.Store(d + destinationStride, Sse2.UnpackHigh(t0, t1).AsUInt32());
        Sse2.Store(d + (2 * destinationStride), Sse2.UnpackLow(t2, t3).AsUInt32());
        Sse2.Store(d + (3 * destinationStride), Sse2.UnpackHigh(t2, t3).AsUInt32());
    }
}
