using System.Buffers.Binary;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;

namespace OnnxLora.Core;

/// <summary>
/// Stored float bytes (little-endian F64/F32/F16/BF16) to and from fp32, one rounding (nearest-even).
/// The one place the project converts between stored float formats.
/// </summary>
public static class FloatCodec
{
    public static float BFloat16ToSingle(ushort bits) => BitConverter.Int32BitsToSingle(bits << 16);

    public static ushort SingleToBFloat16(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value))
        {
            return (ushort)((bits >> 16) | 0x0040);
        }
        uint rounding = 0x7FFF + ((bits >> 16) & 1);
        return (ushort)((bits + rounding) >> 16);
    }

    public static void Decode(DType dtype, ReadOnlySpan<byte> source, Span<float> destination)
    {
        int n = destination.Length;
        switch (dtype)
        {
            case DType.F32:
                MemoryMarshal.Cast<byte, float>(source[..(n * 4)]).CopyTo(destination);
                break;
            case DType.F16:
                TensorPrimitives.ConvertToSingle(MemoryMarshal.Cast<byte, Half>(source[..(n * 2)]), destination);
                break;
            case DType.BF16:
                var raw = MemoryMarshal.Cast<byte, ushort>(source[..(n * 2)]);
                for (int i = 0; i < n; i++)
                {
                    destination[i] = BFloat16ToSingle(raw[i]);
                }
                break;
            case DType.F64:
                var doubles = MemoryMarshal.Cast<byte, double>(source[..(n * 8)]);
                for (int i = 0; i < n; i++)
                {
                    destination[i] = (float)doubles[i];
                }
                break;
            default:
                throw new ArgumentException($"dtype {dtype} is not a floating-point type", nameof(dtype));
        }
    }

    /// <summary>
    /// Encodes fp32 values; returns the index of the first value that is finite in fp32 but not after
    /// the cast (overflow to ±Inf in F16/BF16), or -1.
    /// </summary>
    public static long Encode(DType dtype, ReadOnlySpan<float> source, Span<byte> destination)
    {
        int n = source.Length;
        long overflow = -1;
        switch (dtype)
        {
            case DType.F32:
                MemoryMarshal.Cast<float, byte>(source).CopyTo(destination);
                break;
            case DType.F16:
                var halves = MemoryMarshal.Cast<byte, Half>(destination[..(n * 2)]);
                TensorPrimitives.ConvertToHalf(source, halves);
                // Overflow check only when some value is beyond F16's largest finite magnitude (65504) or a NaN hides the
                // largest magnitude (MaxMagnitude returns NaN when any value is); MaxMagnitude keeps the sign.
                if (n > 0 && !(MathF.Abs(TensorPrimitives.MaxMagnitude(source)) < 65504f))
                {
                    for (int i = 0; i < n; i++)
                    {
                        if (Half.IsInfinity(halves[i]) && float.IsFinite(source[i]))
                        {
                            overflow = i;
                            break;
                        }
                    }
                }
                break;
            case DType.BF16:
                for (int i = 0; i < n; i++)
                {
                    ushort b = SingleToBFloat16(source[i]);
                    BinaryPrimitives.WriteUInt16LittleEndian(destination.Slice(i * 2, 2), b);
                    if (overflow < 0 && (b & 0x7FFF) == 0x7F80 && float.IsFinite(source[i]))
                    {
                        overflow = i;
                    }
                }
                break;
            case DType.F64:
                var doubles = MemoryMarshal.Cast<byte, double>(destination[..(n * 8)]);
                for (int i = 0; i < n; i++)
                {
                    doubles[i] = source[i];
                }
                break;
            default:
                throw new ArgumentException($"dtype {dtype} is not a floating-point type", nameof(dtype));
        }
        return overflow;
    }

    /// <summary>Index of the first NaN or ±Inf, or -1.</summary>
    public static long FirstNonFinite(ReadOnlySpan<float> values)
    {
        // MaxMagnitude is NaN when any value is NaN and ±Inf when any is infinite (vectorised): scan only then.
        if (values.IsEmpty || float.IsFinite(TensorPrimitives.MaxMagnitude(values)))
        {
            return -1;
        }
        for (int i = 0; i < values.Length; i++)
        {
            if (!float.IsFinite(values[i]))
            {
                return i;
            }
        }
        return -1;
    }
}
