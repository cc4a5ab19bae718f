using System.Buffers.Binary;
using System.Runtime.InteropServices;
using OnnxLora.Core.IO;

namespace OnnxLora.Core.Tests.IO;

/// <summary>
/// <see cref="TensorBytes.EncodeInPlace"/> against the definition: every element rounded nearest-even on its own
/// (<see cref="NearestEven"/>, the test's own encoder) at its place in the span's bytes, whatever the count of chunks and waves.
/// </summary>
[TestClass]
public sealed class TensorBytesTests
{
    private static float[] Values(int count, int seed)
    {
        var random = new Random(seed);
        var values = new float[count];
        for (int i = 0; i < count; i++)
        {
            values[i] = (float)((random.NextDouble() - 0.5) * Math.Pow(2, random.Next(-30, 14)));
        }
        return values;
    }

    [TestMethod]
    [DataRow(0)]
    [DataRow(1)]
    [DataRow(4097)]
    [DataRow(1 << 20)]
    [DataRow((1 << 20) + 3)]
    [DataRow((5 << 20) + 12345, DisplayName = "6 chunks: waves of 1, 1, 2 and 2")]
    [DataRow((9 << 20) + 1, DisplayName = "10 chunks: waves of 1, 1, 2, 4 and 2")]
    public void EncodeInPlace_F16AndBF16_EveryElementIsItsOwnRounding(int count)
    {
        foreach (var (dtype, encoder) in new[] { (DType.F16, NearestEven.F16), (DType.BF16, NearestEven.BF16) })
        {
            float[] values = Values(count, count + (int)dtype);
            float[] original = (float[])values.Clone();

            long overflow = TensorBytes.EncodeInPlace(dtype, values);

            Assert.AreEqual(-1L, overflow);
            var bytes = MemoryMarshal.AsBytes(values.AsSpan());
            for (int i = 0; i < count; i++)
            {
                ushort got = BinaryPrimitives.ReadUInt16LittleEndian(bytes[(i * 2)..]);
                if (got != encoder.Encode(original[i]))
                {
                    Assert.Fail($"{dtype}, {count} values: element {i} ({original[i]:R}) encoded as 0x{got:X4}, expected 0x{encoder.Encode(original[i]):X4}");
                }
            }
        }
    }

    [TestMethod]
    public void EncodeInPlace_ReportsTheFirstOverflow_InAnyChunk()
    {
        int count = (3 << 20) + 5;
        float[] values = Values(count, 7);
        values[(2 << 20) + 17] = 1e6f;
        values[(2 << 20) + 90] = -1e6f;

        Assert.AreEqual((2L << 20) + 17, TensorBytes.EncodeInPlace(DType.F16, values));
    }

    [TestMethod]
    public void EncodeInPlace_F32_LeavesTheValues_AndWiderTypesAreRefused()
    {
        float[] values = Values(1000, 3);
        float[] original = (float[])values.Clone();

        Assert.AreEqual(-1L, TensorBytes.EncodeInPlace(DType.F32, values));

        CollectionAssert.AreEqual(original, values);
        Assert.ThrowsExactly<ArgumentException>(() => TensorBytes.EncodeInPlace(DType.F64, values));
    }
}
