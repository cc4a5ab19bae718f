using OnnxLora.Core;
using static TorchSharp.torch;

namespace OnnxLora.Models;

/// <summary>The one map between Core's <see cref="DType"/> and TorchSharp's <see cref="ScalarType"/>.</summary>
public static class TorchDTypes
{
    private static readonly (DType DType, ScalarType Scalar)[] Pairs =
    [
        (DType.F64, ScalarType.Float64),
        (DType.F32, ScalarType.Float32),
        (DType.F16, ScalarType.Float16),
        (DType.BF16, ScalarType.BFloat16),
        (DType.I64, ScalarType.Int64),
        (DType.I32, ScalarType.Int32),
        (DType.I16, ScalarType.Int16),
        (DType.I8, ScalarType.Int8),
        (DType.U8, ScalarType.Byte),
        (DType.Bool, ScalarType.Bool),
    ];

    /// <summary>The TorchSharp element type of <paramref name="dtype"/>.</summary>
    public static ScalarType ToScalarType(this DType dtype)
    {
        foreach (var (d, s) in Pairs)
        {
            if (d == dtype)
            {
                return s;
            }
        }
        throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "unknown dtype");
    }

    /// <summary>The <see cref="DType"/> of a TorchSharp element type; an error naming <paramref name="tensorName"/> when there is none (e.g. complex).</summary>
    public static DType ToDType(this ScalarType scalar, string tensorName)
    {
        foreach (var (d, s) in Pairs)
        {
            if (s == scalar)
            {
                return d;
            }
        }
        throw new NotSupportedException($"tensor '{tensorName}': element type {scalar} has no safetensors dtype.");
    }
}
