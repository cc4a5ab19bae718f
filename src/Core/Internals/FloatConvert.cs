using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace OnnxLora.Core.Internals;

/// <summary>Conversions between stored float formats (little-endian) and float/double.</summary>
internal static class FloatConvert
{
    public static float BFloat16ToSingle(ushort bits) => BitConverter.Int32BitsToSingle(bits << 16);

    /// <summary>Round-to-nearest-even fp32 → bf16, NaN kept NaN.</summary>
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

    /// <summary>Decodes <paramref name="source"/> bytes of <paramref name="dtype"/> into floats.</summary>
    public static void ToSingle(DType dtype, ReadOnlySpan<byte> source, Span<float> destination)
    {
        int n = destination.Length;
        switch (dtype)
        {
            case DType.F32:
                MemoryMarshal.Cast<byte, float>(source[..(n * 4)]).CopyTo(destination);
                break;
            case DType.F16:
                var halves = MemoryMarshal.Cast<byte, Half>(source[..(n * 2)]);
                for (int i = 0; i < n; i++)
                {
                    destination[i] = (float)halves[i];
                }
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

    /// <summary>Encodes floats into <paramref name="dtype"/> bytes (one rounding, round-to-nearest-even).</summary>
    public static void FromSingle(DType dtype, ReadOnlySpan<float> source, Span<byte> destination)
    {
        int n = source.Length;
        switch (dtype)
        {
            case DType.F32:
                MemoryMarshal.Cast<float, byte>(source).CopyTo(destination);
                break;
            case DType.F16:
                var halves = MemoryMarshal.Cast<byte, Half>(destination[..(n * 2)]);
                for (int i = 0; i < n; i++)
                {
                    halves[i] = (Half)source[i];
                }
                break;
            case DType.BF16:
                for (int i = 0; i < n; i++)
                {
                    BinaryPrimitives.WriteUInt16LittleEndian(destination.Slice(i * 2, 2), SingleToBFloat16(source[i]));
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
    }
}
