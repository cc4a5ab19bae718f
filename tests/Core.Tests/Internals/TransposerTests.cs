using System.Runtime.InteropServices;
using OnnxLora.Core.Internals;

namespace OnnxLora.Core.Tests.Internals;

/// <summary>
/// <see cref="Transposer"/> against the definition, destination[c, r] = source[r, c], element by element, for 2-, 4- and
/// 8-byte elements and shapes that exercise every path: whole register blocks, edge rows and columns (sizes that are
/// not multiples of 8 or 4), single rows and columns, several bands, and the parallel path.
/// </summary>
[TestClass]
public sealed class TransposerTests
{
    [TestMethod]
    [DataRow(1, 1)]
    [DataRow(1, 37)]
    [DataRow(37, 1)]
    [DataRow(8, 8)]
    [DataRow(4, 12)]
    [DataRow(7, 9)]
    [DataRow(13, 130)]
    [DataRow(64, 128)]
    [DataRow(65, 257)]
    [DataRow(131, 67)]
    [DataRow(1029, 1030)]
    [DataRow(2048, 1031)]
    public void Transpose_EqualsTheDefinition_ForEveryElementSize(int rows, int cols)
    {
        foreach (int size in new[] { 2, 4, 8 })
        {
            var source = new byte[rows * cols * size];
            new Random((rows * 1000) + cols + size).NextBytes(source);
            var destination = new byte[source.Length];

            Transposer.Transpose(source, destination, rows, cols, size);

            for (int r = 0; r < rows; r++)
            {
                for (int c = 0; c < cols; c++)
                {
                    var want = source.AsSpan(((r * cols) + c) * size, size);
                    var got = destination.AsSpan(((c * rows) + r) * size, size);
                    if (!want.SequenceEqual(got))
                    {
                        Assert.Fail($"{size}-byte elements, [{rows}, {cols}]: destination[{c}, {r}] is {Convert.ToHexString(got)}, source[{r}, {c}] is {Convert.ToHexString(want)}");
                    }
                }
            }
        }
    }

    [TestMethod]
    public void Transpose_Twice_GivesTheSourceBack()
    {
        const int rows = 300, cols = 4099;
        var source = new ushort[rows * cols];
        for (int i = 0; i < source.Length; i++)
        {
            source[i] = (ushort)(i * 2654435761u >> 16);
        }
        var once = new ushort[source.Length];
        var twice = new ushort[source.Length];

        Transposer.Transpose(MemoryMarshal.AsBytes(source.AsSpan()), MemoryMarshal.AsBytes(once.AsSpan()), rows, cols, 2);
        Transposer.Transpose(MemoryMarshal.AsBytes(once.AsSpan()), MemoryMarshal.AsBytes(twice.AsSpan()), cols, rows, 2);

        CollectionAssert.AreEqual(source, twice);
    }

    [TestMethod]
    [DataRow(37, 23, 0, 23)]
    [DataRow(37, 23, 5, 9)]
    [DataRow(37, 23, 22, 1)]
    [DataRow(130, 70, 8, 16)]
    [DataRow(1029, 1030, 3, 517)]
    public void Transpose_BandOfColumns_WithTheSourceStride_EqualsTheDefinition(int rows, int stride, int c0, int cols)
    {
        foreach (int size in new[] { 2, 4, 8 })
        {
            var matrix = new byte[rows * stride * size];
            new Random((rows * 1000) + stride + c0 + size).NextBytes(matrix);
            var destination = new byte[rows * cols * size];

            Transposer.Transpose(matrix.AsSpan(c0 * size), destination, rows, cols, size, stride);

            for (int r = 0; r < rows; r++)
            {
                for (int c = 0; c < cols; c++)
                {
                    var want = matrix.AsSpan(((r * stride) + c0 + c) * size, size);
                    var got = destination.AsSpan(((c * rows) + r) * size, size);
                    if (!want.SequenceEqual(got))
                    {
                        Assert.Fail($"{size}-byte elements, [{rows}, {cols}] stride {stride} from column {c0}: destination[{c}, {r}] is {Convert.ToHexString(got)}, matrix[{r}, {c0 + c}] is {Convert.ToHexString(want)}");
                    }
                }
            }
        }
    }

    [TestMethod]
    public void Transpose_SourceShorterThanTheStridedRowsNeed_IsRefused()
    {
        var source = new byte[((3 * 10) + 3) * 2];
        var destination = new byte[4 * 4 * 2];

        Assert.ThrowsExactly<ArgumentException>(() => Transposer.Transpose(source, destination, 4, 4, 2, 10));
        Assert.ThrowsExactly<ArgumentException>(() => Transposer.Transpose(new byte[64], destination, 4, 4, 2, 3));
    }
}
