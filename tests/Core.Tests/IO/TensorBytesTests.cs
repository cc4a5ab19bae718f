using System.Buffers.Binary;
using System.Runtime.InteropServices;
using OnnxLora.Core.IO;
using OnnxLora.Core.Peft;

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

    [TestMethod]
    [DataRow(0)]
    [DataRow(5)]
    [DataRow((1 << 20) + 3)]
    public void EncodeWholeBehind_WritesTheEncodedTensorInOrder_InPlaceOrInChunks(int count)
    {
        float[] values = Values(count, 11);
        foreach (var dtype in new[] { DType.F16, DType.F32, DType.F64 })
        {
            var expected = new byte[count * dtype.SizeOf()];
            FloatCodec.Encode(dtype, values, expected);
            var written = new List<byte>();
            long next = 0;
            using (var behind = new WriteBehind(capacity: 2, bufferBytes: 1 << 16))
            {
                TensorBytes.EncodeWholeBehind(dtype, count, behind, v => values.CopyTo(v), (offset, bytes) =>
                {
                    Assert.AreEqual(next, offset, $"{dtype}: pieces in order");
                    next += bytes.Length;
                    written.AddRange(bytes.ToArray());
                }, refuseOverflow: null);
                behind.Complete();
            }
            CollectionAssert.AreEqual(expected, written.ToArray(), dtype.ToString());
        }
    }

    [TestMethod]
    public void EncodeWholeBehind_RefusedOverflow_NamesTheFp32Value_QueuesNothing_ReturnsTheBuffer()
    {
        // Element 3 overflows fp16 (65504 is its largest finite value); in place, its fp32 bytes are overwritten by the encoding.
        float[] values = [1, 2, 3, 70000.5f, 5, 6, 7, 8];
        using var behind = new WriteBehind(capacity: 2, bufferBytes: 1 << 16);
        int writes = 0;
        // Five refusals in a row: a buffer not given back would make the third wait forever.
        var refusals = Task.Run(() =>
        {
            for (int i = 0; i < 5; i++)
            {
                var e = Assert.ThrowsExactly<InvalidDataException>(() => TensorBytes.EncodeWholeBehind(DType.F16, values.Length, behind, v => values.CopyTo(v),
                    (_, _) => writes++, (index, value) => new InvalidDataException($"{value} at {index}")));
                Assert.AreEqual("70000.5 at 3", e.Message);
            }
        });
        Assert.IsTrue(refusals.Wait(TimeSpan.FromSeconds(30)), "the buffers are given back after a refusal");
        refusals.GetAwaiter().GetResult();
        behind.Complete();
        Assert.AreEqual(0, writes, "nothing of a refused tensor is written");
    }

    [TestMethod]
    [DataRow(DType.F16, DType.F16, 300, 1000)]
    [DataRow(DType.F32, DType.F16, 7, 3)]
    [DataRow(DType.F16, DType.F32, 140, 1000)]
    [DataRow(DType.BF16, DType.BF16, 1, 200_000)]
    [DataRow(DType.F16, DType.F16, 0, 5)]
    public void MergeRowsBehind_WritesWhatTheWholeTensorMergeWrites(DType input, DType output, int rows, int cols)
    {
        // Blocks of 131072 values: 300 × 1000 is three blocks, the last short; a 200000-value row is a block of its own.
        const int k = 4, header = 13;
        var update = new RowUpdate([new DeltaMath.Product(Values(rows * k, 1), Values(k * cols, 2), rows, cols, k, 0.25)]);
        var stored = new byte[rows * cols * input.SizeOf()];
        FloatCodec.Encode(input, Values(rows * cols, 3), stored);
        var expected = new byte[rows * cols * output.SizeOf()];
        var whole = new float[rows * cols];
        FloatCodec.Decode(input, stored, whole);
        update.Apply(whole, 0);
        FloatCodec.Encode(output, whole, expected);
        string path = Path.GetTempFileName();
        try
        {
            File.WriteAllBytes(path, [.. new byte[header], .. stored]);
            using var handle = File.OpenHandle(path);
            var written = new byte[expected.Length];
            long pieces = 0;
            using (var behind = new WriteBehind(capacity: 2, bufferBytes: 1 << 16))
            {
                TensorBytes.MergeRowsBehind(handle, header, input, output, update, behind, (offset, bytes) =>
                {
                    bytes.CopyTo(written.AsSpan((int)offset));
                    pieces++;
                }, refuse: null);
                behind.Complete();
            }
            CollectionAssert.AreEqual(expected, written, $"{input} → {output}");
            Assert.IsGreaterThan(0L, pieces, "the tensor was written");
        }
        finally
        {
            File.Delete(path);
        }
    }

    [TestMethod]
    public void MergeRowsBehind_RefusesTheLowestBadIndexOfAnyBlock_QueuesNothing_AndEndsAtTheFileEnd()
    {
        // [600, 1000] in five blocks: an fp16 overflow in the last block, a NaN in the third, a larger NaN index in the fourth.
        const int rows = 600, cols = 1000;
        var update = new RowUpdate([new DeltaMath.Product(new float[rows], new float[cols], rows, cols, 1, 1.0)]);
        var values = Values(rows * cols, 4);
        values[550_000] = 70000f;
        values[300_007] = float.NaN;
        values[400_000] = float.NegativeInfinity;
        var stored = new byte[values.Length * 4];
        FloatCodec.Encode(DType.F32, values, stored);
        string path = Path.GetTempFileName();
        try
        {
            File.WriteAllBytes(path, stored);
            using var handle = File.OpenHandle(path);
            using var behind = new WriteBehind(capacity: 2, bufferBytes: 1 << 16);
            int writes = 0;
            // Five refusals in a row: a buffer not given back would make the third wait forever.
            var refusals = Task.Run(() =>
            {
                for (int i = 0; i < 5; i++)
                {
                    var e = Assert.ThrowsExactly<InvalidDataException>(() => TensorBytes.MergeRowsBehind(handle, 0, DType.F32, DType.F16, update, behind,
                        (_, _) => writes++, (index, value) => new InvalidDataException($"{value} at {index}")));
                    Assert.AreEqual("NaN at 300007", e.Message);
                }
            });
            Assert.IsTrue(refusals.Wait(TimeSpan.FromSeconds(60)), "the buffers are given back after a refusal");
            refusals.GetAwaiter().GetResult();
            values[300_007] = 1f;
            values[400_000] = 1f;
            FloatCodec.Encode(DType.F32, values, stored);
            File.WriteAllBytes(path, stored);
            var overflow = Assert.ThrowsExactly<InvalidDataException>(() => TensorBytes.MergeRowsBehind(handle, 0, DType.F32, DType.F16, update, behind,
                (_, _) => writes++, (index, value) => new InvalidDataException($"{value} at {index}")));
            Assert.AreEqual("70000 at 550000", overflow.Message);
            Assert.ThrowsExactly<EndOfStreamException>(() => TensorBytes.MergeRowsBehind(handle, 4, DType.F32, DType.F16, update, behind, (_, _) => writes++, refuse: null));
            behind.Complete();
            Assert.AreEqual(0, writes, "nothing of a refused or short tensor is written");
        }
        finally
        {
            File.Delete(path);
        }
    }
}
