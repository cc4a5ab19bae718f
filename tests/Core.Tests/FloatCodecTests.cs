using System.Buffers.Binary;

namespace OnnxLora.Core.Tests;

/// <summary>
/// <see cref="FloatCodec"/>'s fp32 → fp16 / bf16 bits against <see cref="NearestEven"/>, a reference written from
/// IEEE 754's definition (exact arithmetic in fp64, <see cref="MidpointRounding.ToEven"/>), sharing nothing with the
/// codec (no <see cref="Half"/>, no bit tricks): every tie between two neighbours, the fp32 values just either side
/// of it, each representable value, subnormals, the overflow boundary, NaN, ±Inf and ±0, plus random bit patterns.
/// </summary>
[TestClass]
public sealed class FloatCodecTests
{
    [TestMethod]
    [DataRow(DType.F16)]
    [DataRow(DType.BF16)]
    public void Encode_EveryTieAndItsNeighbours_MatchesRoundToNearestEven(DType dtype)
    {
        var format = NearestEven.Of(dtype);
        var inputs = new List<float>();
        for (int bits = 0; bits < 0x10000; bits++)
        {
            double? value = format.Decode((ushort)bits);
            if (value is not double v || double.IsInfinity(v))
            {
                continue;
            }
            // The next representable magnitude (max finite + one ulp past the top: the overflow tie).
            double next = Math.Abs(v) + format.Ulp(Math.Abs(v));
            double tie = Math.CopySign((Math.Abs(v) + next) / 2, v);
            foreach (double x in new[] { v, tie })
            {
                float f = (float)x;
                Assert.AreEqual(x, f, $"{x} is exact in fp32, or the test is not testing ties");
                inputs.Add(f);
                inputs.Add(MathF.BitIncrement(f));
                inputs.Add(MathF.BitDecrement(f));
            }
        }
        AssertMatches(dtype, format, [.. inputs]);
    }

    [TestMethod]
    [DataRow(DType.F16)]
    [DataRow(DType.BF16)]
    public void Encode_RandomBitPatterns_MatchRoundToNearestEven(DType dtype)
    {
        var random = new Random(18);
        var inputs = new float[1 << 20];
        for (int i = 0; i < inputs.Length; i++)
        {
            inputs[i] = BitConverter.Int32BitsToSingle(random.Next() ^ (random.Next(2) << 31));
        }
        AssertMatches(dtype, NearestEven.Of(dtype), inputs);
    }

    [TestMethod]
    public void Encode_SpecialValues_F16()
    {
        var cases = new (float Input, ushort Bits)[]
        {
            (0f, 0x0000), (-0f, 0x8000), (float.PositiveInfinity, 0x7C00), (float.NegativeInfinity, 0xFC00),
            (65504f, 0x7BFF), (65519.996f, 0x7BFF), (65520f, 0x7C00), (-65520f, 0xFC00), (1e10f, 0x7C00),
            (MathF.ScaleB(1, -24), 0x0001), (MathF.ScaleB(1, -25), 0x0000), (MathF.ScaleB(3, -26), 0x0001),
            (MathF.ScaleB(3, -25), 0x0002), (MathF.ScaleB(1, -14), 0x0400), (float.Epsilon, 0x0000), (-float.Epsilon, 0x8000),
            (1f + MathF.ScaleB(1, -11), 0x3C00), (1f + MathF.ScaleB(3, -11), 0x3C02),
        };
        foreach (var (input, bits) in cases)
        {
            Assert.AreEqual(bits, NearestEven.F16.Encode(input), $"reference for {input:R}");
            Assert.AreEqual(bits, EncodeOne(DType.F16, input), $"FloatCodec for {input:R}");
        }
    }

    [TestMethod]
    public void Encode_SpecialValues_BF16()
    {
        var cases = new (float Input, ushort Bits)[]
        {
            (0f, 0x0000), (-0f, 0x8000), (float.PositiveInfinity, 0x7F80), (float.NegativeInfinity, 0xFF80),
            (float.MaxValue, 0x7F80), (BitConverter.UInt32BitsToSingle(0x7F7F7FFF), 0x7F7F), (BitConverter.UInt32BitsToSingle(0x7F7F8000), 0x7F80),
            (float.Epsilon, 0x0000), (BitConverter.UInt32BitsToSingle(0x00008000), 0x0000), (BitConverter.UInt32BitsToSingle(0x00018000), 0x0002),
            (BitConverter.UInt32BitsToSingle(0x00010001), 0x0001), (1f + MathF.ScaleB(1, -8), 0x3F80), (1f + MathF.ScaleB(3, -8), 0x3F82),
        };
        foreach (var (input, bits) in cases)
        {
            Assert.AreEqual(bits, NearestEven.BF16.Encode(input), $"reference for {input:R}");
            Assert.AreEqual(bits, EncodeOne(DType.BF16, input), $"FloatCodec for {input:R}");
            Assert.AreEqual(bits, FloatCodec.SingleToBFloat16(input), $"SingleToBFloat16 for {input:R}");
        }
    }

    [TestMethod]
    [DataRow(DType.F16)]
    [DataRow(DType.BF16)]
    public void Encode_NaNs_StayNaNWithTheirSign(DType dtype)
    {
        // Quiet and signalling NaNs, smallest and largest payloads, both signs: truncating a payload that lives only in
        // the low 16 bits would give ±Inf.
        uint[] patterns = [0x7FC00000, 0x7F800001, 0x7F800100, 0x7FBFFFFF, 0x7FFFFFFF, 0xFFC00000, 0xFF800001, 0xFFFFFFFF];
        foreach (uint p in patterns)
        {
            float nan = BitConverter.UInt32BitsToSingle(p);
            ushort bits = EncodeOne(dtype, nan);
            Assert.IsTrue(NearestEven.Of(dtype).IsNaN(bits), $"0x{p:X8} → 0x{bits:X4} is not a NaN");
            Assert.AreEqual(p >> 31, (uint)bits >> 15, $"0x{p:X8} → 0x{bits:X4}: sign");
        }
    }

    [TestMethod]
    [DataRow(DType.F16)]
    [DataRow(DType.BF16)]
    public void Encode_ReturnsTheFirstValueThatOverflows(DType dtype)
    {
        float big = dtype == DType.F16 ? 70000f : float.MaxValue;
        float[] values = [1f, 65504f, -big, big];
        var bytes = new byte[values.Length * 2];

        Assert.AreEqual(2L, FloatCodec.Encode(dtype, values, bytes));
        Assert.AreEqual(-1L, FloatCodec.Encode(dtype, [1f, float.PositiveInfinity, float.NaN], new byte[6]), "Inf and NaN were not finite before");
    }

    [TestMethod]
    [DataRow(DType.F16)]
    [DataRow(DType.BF16)]
    public void Encode_OverflowBesideANaN_IsStillReported(DType dtype)
    {
        // A NaN elsewhere in the span must not hide a finite value that overflows (safe mode relies on this index).
        float big = dtype == DType.F16 ? 70000f : float.MaxValue;
        Assert.AreEqual(1L, FloatCodec.Encode(dtype, [float.NaN, big, 1f], new byte[6]));
    }

    [TestMethod]
    [DataRow(0)]
    [DataRow(15)]
    [DataRow(4095)]
    [DataRow(4096 + 33)]
    public void Encode_F16Overflow_IsFoundAnywhere_AndTheTopRoundingIsNot(int length)
    {
        // The check looks at the halves written (exponent all ones); a value that rounds down to 65504 is no overflow,
        // the last element (past the last whole vector) is checked like the first.
        var values = new float[length + 1];
        Array.Fill(values, 65519.996f);
        var bytes = new byte[values.Length * 2];
        Assert.AreEqual(-1L, FloatCodec.Encode(DType.F16, values, bytes), "65519.996 rounds to 65504");
        values[length] = -65520f;
        Assert.AreEqual(length, FloatCodec.Encode(DType.F16, values, bytes));
    }

    [TestMethod]
    [DataRow(0)]
    [DataRow(7)]
    [DataRow((1 << 20) - 1)]
    [DataRow((1 << 20) + 5)]
    [DataRow((3 << 20) + 17)]
    public void FirstNonFinite_FindsTheFirstNaNOrInf_InAnyChunkAndTheTail(int at)
    {
        // Spans over 1 Mi values are scanned in chunks on all cores: the answer is still the first index.
        var values = new float[(3 << 20) + 18];
        var random = new Random(at);
        for (int i = 0; i < values.Length; i++)
        {
            values[i] = (float)(random.NextDouble() - 0.5) * 1e6f;
        }
        values[1] = float.MaxValue;
        values[2] = -float.Epsilon;
        Assert.AreEqual(-1L, FloatCodec.FirstNonFinite(values), "largest and smallest finite values");
        foreach (float bad in new[] { float.NaN, float.PositiveInfinity, float.NegativeInfinity, BitConverter.UInt32BitsToSingle(0xFF800001) })
        {
            values[at] = bad;
            values[^1] = float.NaN;
            Assert.AreEqual(at, FloatCodec.FirstNonFinite(values), $"{bad} at {at}");
            values[at] = 1f;
            values[^1] = 1f;
        }
    }

    [TestMethod]
    [DataRow(DType.F16)]
    [DataRow(DType.BF16)]
    public void Decode_EveryBitPattern_IsTheReferenceValue(DType dtype)
    {
        var format = NearestEven.Of(dtype);
        var bytes = new byte[0x10000 * 2];
        for (int bits = 0; bits < 0x10000; bits++)
        {
            BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(bits * 2), (ushort)bits);
        }
        var decoded = new float[0x10000];
        FloatCodec.Decode(dtype, bytes, decoded);
        for (int bits = 0; bits < 0x10000; bits++)
        {
            double? expected = format.Decode((ushort)bits);
            if (expected is null)
            {
                Assert.IsTrue(float.IsNaN(decoded[bits]), $"0x{bits:X4} is a NaN");
                continue;
            }
            Assert.AreEqual(expected.Value, decoded[bits], $"0x{bits:X4}");
            Assert.AreEqual(bits >> 15 == 1, float.IsNegative(decoded[bits]), $"0x{bits:X4}: sign");
        }
    }

    private static ushort EncodeOne(DType dtype, float value)
    {
        var bytes = new byte[2];
        FloatCodec.Encode(dtype, [value], bytes);
        return BinaryPrimitives.ReadUInt16LittleEndian(bytes);
    }

    private static void AssertMatches(DType dtype, NearestEven format, float[] inputs)
    {
        var bytes = new byte[inputs.Length * 2];
        FloatCodec.Encode(dtype, inputs, bytes);
        int mismatches = 0;
        string? first = null;
        for (int i = 0; i < inputs.Length; i++)
        {
            ushort actual = BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(i * 2));
            bool ok = float.IsNaN(inputs[i])
                ? format.IsNaN(actual) && (actual >> 15) == (BitConverter.SingleToUInt32Bits(inputs[i]) >> 31)
                : actual == format.Encode(inputs[i]);
            if (!ok)
            {
                mismatches++;
                first ??= $"{inputs[i]:R} (0x{BitConverter.SingleToUInt32Bits(inputs[i]):X8}) → 0x{actual:X4}, round-to-nearest-even gives 0x{format.Encode(inputs[i]):X4}";
            }
        }
        Assert.AreEqual(0, mismatches, $"{mismatches} of {inputs.Length} values differ from round-to-nearest-even; first: {first}");
    }
}
