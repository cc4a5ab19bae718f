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
}
