using System.Buffers.Binary;
using Onnx;
using OnnxLora.Core;
using OnnxLora.Core.Onnx;

namespace OnnxLora.Merge.Onnx.Internals;

/// <summary>
/// Compares an initializer's values with a checkpoint tensor (as W or as Wᵀ), tolerating one
/// rounding to the coarser of the two dtypes (fp16 and bf16 exports of fp32 weights and vice versa).
/// A few evenly spaced elements are compared first so that most non-matches cost almost nothing.
/// </summary>
internal static class ContentComparer
{
    private const int Probes = 64;

    /// <summary>
    /// True when the initializer holds <paramref name="reference"/> ([rows, cols], row-major) as is
    /// (<paramref name="transposed"/> false, initializer [rows, cols]) or transposed (initializer [cols, rows]).
    /// </summary>
    /// <remarks>An initializer kept in external data is read from <paramref name="data"/> (that one tensor, decoded).</remarks>
    public static bool Matches(TensorProto initializer, DType initType, OnnxExternalDataFiles? data, float[] reference, DType referenceType, long rows, long cols, bool transposed)
    {
        var values = new InitializerValues(initializer, initType, data);
        long n = reference.LongLength;
        if (values.Count != n)
        {
            return false;
        }
        double relTol = Epsilon(initType) + Epsilon(referenceType);
        double absTol = Tiny(initType) + Tiny(referenceType);
        long step = Math.Max(1, n / Probes);
        for (long k = 0; k < n; k += step)
        {
            if (!Close(values[k], reference[ReferenceIndex(k, rows, cols, transposed)], relTol, absTol))
            {
                return false;
            }
        }
        for (long k = 0; k < n; k++)
        {
            if (!Close(values[k], reference[ReferenceIndex(k, rows, cols, transposed)], relTol, absTol))
            {
                return false;
            }
        }
        return true;
    }

    /// <summary>The reference index of initializer element <paramref name="k"/>.</summary>
    private static long ReferenceIndex(long k, long rows, long cols, bool transposed)
    {
        if (!transposed)
        {
            return k;
        }
        // Initializer [cols, rows]: element k is (j, i) with j = k / rows, i = k % rows, i.e. reference (i, j).
        long j = k / rows, i = k % rows;
        return (i * cols) + j;
    }

    private static bool Close(float a, float b, double relTol, double absTol)
    {
        if (a == b || (float.IsNaN(a) && float.IsNaN(b)))
        {
            return true;
        }
        double diff = Math.Abs((double)a - b);
        return diff <= (relTol * Math.Max(Math.Abs((double)a), Math.Abs((double)b))) + absTol;
    }

    /// <summary>Relative error of one rounding to the dtype, with a factor 2 of margin.</summary>
    private static double Epsilon(DType dtype) => dtype switch
    {
        DType.F16 => Math.ScaleB(1, -10),
        DType.BF16 => Math.ScaleB(1, -7),
        DType.F32 => Math.ScaleB(1, -23),
        _ => 0,
    };

    /// <summary>Absolute error of rounding to the dtype near zero (fp16's subnormal spacing).</summary>
    private static double Tiny(DType dtype) => dtype == DType.F16 ? Math.ScaleB(1, -24) : 0;

    /// <summary>Element access straight from raw_data, without decoding the whole tensor.</summary>
    private readonly struct InitializerValues
    {
        private readonly ReadOnlyMemory<byte> _raw;
        private readonly float[]? _decoded;
        private readonly DType _dtype;

        public InitializerValues(TensorProto tensor, DType dtype, OnnxExternalDataFiles? data)
        {
            _dtype = dtype;
            Count = OnnxTensors.ElementCount(tensor);
            if (data?.RangeOf(tensor) is { } range)
            {
                _raw = default;
                _decoded = data.ReadAsSingle(range);
            }
            else if (!tensor.RawData.IsEmpty)
            {
                _raw = tensor.RawData.Memory;
                _decoded = null;
                if (_raw.Length != Count * dtype.SizeOf())
                {
                    Count = -1;
                }
            }
            else
            {
                _raw = default;
                _decoded = OnnxTensors.ReadAsSingle(tensor);
            }
        }

        public long Count { get; }

        public float this[long k]
        {
            get
            {
                if (_decoded is not null)
                {
                    return _decoded[k];
                }
                var span = _raw.Span;
                int size = _dtype.SizeOf();
                var bytes = span.Slice(checked((int)(k * size)), size);
                return _dtype switch
                {
                    DType.F32 => BinaryPrimitives.ReadSingleLittleEndian(bytes),
                    DType.F16 => (float)BinaryPrimitives.ReadHalfLittleEndian(bytes),
                    DType.BF16 => FloatCodec.BFloat16ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(bytes)),
                    _ => (float)BinaryPrimitives.ReadDoubleLittleEndian(bytes),
                };
            }
        }
    }
}
