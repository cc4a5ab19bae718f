using System.Runtime.InteropServices;

namespace OnnxLora.Core.Internals;

/// <summary>Cache-blocked transpose of a row-major matrix of 2-, 4- or 8-byte elements.</summary>
internal static class Transposer
{
    private const int Block = 64;

    /// <summary>destination [cols, rows] = sourceᵀ for source [rows, cols].</summary>
    public static void Transpose(ReadOnlySpan<byte> source, Span<byte> destination, int rows, int cols, int elementSize)
    {
        switch (elementSize)
        {
            case 2: Run(MemoryMarshal.Cast<byte, ushort>(source), MemoryMarshal.Cast<byte, ushort>(destination), rows, cols); break;
            case 4: Run(MemoryMarshal.Cast<byte, uint>(source), MemoryMarshal.Cast<byte, uint>(destination), rows, cols); break;
            case 8: Run(MemoryMarshal.Cast<byte, ulong>(source), MemoryMarshal.Cast<byte, ulong>(destination), rows, cols); break;
            default: throw new ArgumentOutOfRangeException(nameof(elementSize), elementSize, "expected 2, 4 or 8");
        }
    }

    private static void Run<T>(ReadOnlySpan<T> source, Span<T> destination, int rows, int cols) where T : unmanaged
    {
        if (source.Length != (long)rows * cols || destination.Length != source.Length)
        {
            throw new ArgumentException($"transpose: {source.Length} → {destination.Length} elements for [{rows}, {cols}]");
        }
        for (int r0 = 0; r0 < rows; r0 += Block)
        {
            int r1 = Math.Min(r0 + Block, rows);
            for (int c0 = 0; c0 < cols; c0 += Block)
            {
                int c1 = Math.Min(c0 + Block, cols);
                // Destination rows written contiguously (measured faster than source-row order here).
                for (int c = c0; c < c1; c++)
                {
                    var target = destination.Slice(c * rows, rows);
                    for (int r = r0; r < r1; r++)
                    {
                        target[r] = source[(r * cols) + c];
                    }
                }
            }
        }
    }
}
