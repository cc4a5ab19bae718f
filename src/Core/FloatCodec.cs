using System.Buffers.Binary;
using System.Numerics;
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
                // Overflow check only when some output is ±Inf or NaN (exponent all ones): an integer max over the halves
                // just written, half the bytes of the fp32 values and no NaN handling.
                if (!AllFiniteHalves(MemoryMarshal.Cast<Half, ushort>(halves)))
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

    /// <summary>Index of the first NaN or ±Inf, or -1. Large spans are scanned in chunks on all cores.</summary>
    public static long FirstNonFinite(ReadOnlySpan<float> values)
    {
        const int Chunk = 1 << 20;
        if (values.Length <= Chunk || Environment.ProcessorCount == 1)
        {
            return AllFinite(values) ? -1 : FirstNonFiniteScalar(values, 0);
        }
        int chunks = (values.Length + Chunk - 1) / Chunk;
        var flagged = new bool[chunks];
        unsafe
        {
            fixed (float* start = values)
            {
                float* p = start;
                int count = values.Length;
                Parallel.For(0, chunks, c =>
                {
                    int first = c * Chunk;
                    flagged[c] = !AllFinite(new ReadOnlySpan<float>(p + first, Math.Min(Chunk, count - first)));
                });
            }
        }
        int bad = Array.IndexOf(flagged, true);
        return bad < 0 ? -1 : FirstNonFiniteScalar(values, bad * Chunk);
    }

    /// <summary>
    /// True when no value is NaN or ±Inf: the largest of the bit patterns without their sign stays below the exponent all
    /// ones (0x7F800000), an integer max per vector lane (a float max needs NaN handling and is slower).
    /// </summary>
    private static bool AllFinite(ReadOnlySpan<float> values) => MaskedMaxBelow(MemoryMarshal.Cast<float, uint>(values), 0x7FFF_FFFFu, 0x7F80_0000u);

    /// <summary>True when no fp16 bit pattern has the exponent all ones (±Inf, NaN): their largest without the sign is below 0x7C00.</summary>
    private static bool AllFiniteHalves(ReadOnlySpan<ushort> bits) => MaskedMaxBelow(bits, (ushort)0x7FFF, (ushort)0x7C00);

    /// <summary>max(bits[i] &amp; mask) &lt; limit, vectorised.</summary>
    private static bool MaskedMaxBelow<T>(ReadOnlySpan<T> bits, T mask, T limit)
        where T : unmanaged, IBinaryInteger<T>, IUnsignedNumber<T>
    {
        var masks = new Vector<T>(mask);
        var max = Vector<T>.Zero;
        int i = 0;
        for (; i <= bits.Length - Vector<T>.Count; i += Vector<T>.Count)
        {
            max = Vector.Max(max, new Vector<T>(bits[i..]) & masks);
        }
        T largest = T.Zero;
        for (int lane = 0; lane < Vector<T>.Count; lane++)
        {
            largest = T.Max(largest, max[lane]);
        }
        for (; i < bits.Length; i++)
        {
            largest = T.Max(largest, bits[i] & mask);
        }
        return largest < limit;
    }

    private static long FirstNonFiniteScalar(ReadOnlySpan<float> values, int from)
    {
        for (int i = from; i < values.Length; i++)
        {
            if (!float.IsFinite(values[i]))
            {
                return i;
            }
        }
        return -1;
    }
}
