using OnnxLora.Core;

namespace OnnxLora.Testing;

/// <summary>
/// Shared by the test projects (linked into each that needs it). Round-to-nearest, ties-to-even into a binary16-like
/// format (1 sign bit, <c>exponentBits</c>, <c>mantissaBits</c>, IEEE subnormals, ±Inf, NaN), computed from the definition: |x| is scaled by a power of two so that one unit is
/// one ulp of x's binade (exact in fp64), rounded with <see cref="Math.Round(double, MidpointRounding)"/>, and the
/// result is encoded field by field; a result above the largest finite value is ±Inf.
/// </summary>
internal sealed class NearestEven(int exponentBits, int mantissaBits)
{
    public static NearestEven F16 { get; } = new(5, 10);

    public static NearestEven BF16 { get; } = new(8, 7);

    private int Bias => (1 << (exponentBits - 1)) - 1;

    private int MinNormalExponent => 1 - Bias;

    private int ExponentMask => (1 << exponentBits) - 1;

    private double MaxFinite => Math.ScaleB((1 << (mantissaBits + 1)) - 1, Bias - mantissaBits);

    public static NearestEven Of(DType dtype) => dtype switch
    {
        DType.F16 => F16,
        DType.BF16 => BF16,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype)),
    };

    /// <summary>The spacing of representable values at |x| (the subnormal spacing below the normal range).</summary>
    public double Ulp(double magnitude) =>
        Math.ScaleB(1, Math.Max(magnitude == 0 ? int.MinValue : Math.ILogB(magnitude), MinNormalExponent) - mantissaBits);

    public ushort Encode(float value)
    {
        int sign = BitConverter.SingleToUInt32Bits(value) >> 31 == 1 ? 1 << 15 : 0;
        int infinity = ExponentMask << mantissaBits;
        if (float.IsNaN(value))
        {
            return (ushort)(sign | infinity | (1 << (mantissaBits - 1)));
        }
        double x = Math.Abs((double)value);
        if (double.IsInfinity(x))
        {
            return (ushort)(sign | infinity);
        }
        if (x == 0)
        {
            return (ushort)sign;
        }
        double ulp = Ulp(x);
        double rounded = Math.Round(x / ulp, MidpointRounding.ToEven) * ulp;
        if (rounded > MaxFinite)
        {
            return (ushort)(sign | infinity);
        }
        if (rounded == 0)
        {
            return (ushort)sign;
        }
        int exponent = Math.ILogB(rounded);
        if (exponent < MinNormalExponent)
        {
            return (ushort)(sign | (int)(rounded / Math.ScaleB(1, MinNormalExponent - mantissaBits)));
        }
        int mantissa = (int)(Math.ScaleB(rounded, mantissaBits - exponent) - (1 << mantissaBits));
        return (ushort)(sign | ((exponent + Bias) << mantissaBits) | mantissa);
    }

    /// <summary>The value of a bit pattern; null for NaN.</summary>
    public double? Decode(ushort bits)
    {
        double sign = (bits >> 15) == 1 ? -1 : 1;
        int exponent = (bits >> mantissaBits) & ExponentMask;
        int mantissa = bits & ((1 << mantissaBits) - 1);
        if (exponent == ExponentMask)
        {
            return mantissa == 0 ? sign * double.PositiveInfinity : null;
        }
        return exponent == 0
            ? sign * Math.ScaleB(mantissa, MinNormalExponent - mantissaBits)
            : sign * Math.ScaleB((1 << mantissaBits) + mantissa, exponent - Bias - mantissaBits);
    }

    public bool IsNaN(ushort bits) => ((bits >> mantissaBits) & ExponentMask) == ExponentMask && (bits & ((1 << mantissaBits) - 1)) != 0;
}
