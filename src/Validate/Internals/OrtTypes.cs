using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using OnnxLora.Core;

namespace OnnxLora.Validate.Internals;

/// <summary>
/// The one map between <see cref="DType"/> and ONNX Runtime's <see cref="TensorElementType"/> for the element types
/// Validate feeds and compares, and host copies of outputs. Any other type is an error naming the tensor.
/// </summary>
internal static class OrtTypes
{
    /// <summary>The supported types, as error messages list them.</summary>
    public const string SupportedNames = "float32, float16, bfloat16, float64, int64, int32 or bool";

    private static readonly (DType DType, TensorElementType Ort)[] Map =
    [
        (DType.F32, TensorElementType.Float),
        (DType.F16, TensorElementType.Float16),
        (DType.BF16, TensorElementType.BFloat16),
        (DType.F64, TensorElementType.Double),
        (DType.I64, TensorElementType.Int64),
        (DType.I32, TensorElementType.Int32),
        (DType.Bool, TensorElementType.Bool),
    ];

    /// <summary>The <see cref="DType"/> of an ONNX Runtime element type; false for types Validate does not handle.</summary>
    public static bool TryDType(TensorElementType type, out DType dtype)
    {
        foreach (var (d, ort) in Map)
        {
            if (ort == type)
            {
                dtype = d;
                return true;
            }
        }
        dtype = default;
        return false;
    }

    /// <summary>The ONNX Runtime element type of <paramref name="dtype"/>.</summary>
    /// <param name="dtype">The element type.</param>
    /// <param name="tensor">The tensor it belongs to, for the error message ("input input_ids").</param>
    /// <exception cref="InvalidDataException"><paramref name="dtype"/> is not one Validate handles.</exception>
    public static TensorElementType ToOrt(DType dtype, string tensor)
    {
        foreach (var (d, ort) in Map)
        {
            if (d == dtype)
            {
                return ort;
            }
        }
        throw ValidateThrow.Invalid(tensor, "element type", dtype.ReportName(), SupportedNames);
    }

    /// <summary>
    /// The name reports and messages give an element type: NumPy's spelling ("float32", "bfloat16", "int64", "bool").
    /// </summary>
    public static string ReportName(this DType dtype) => dtype switch
    {
        DType.F64 => "float64",
        DType.F32 => "float32",
        DType.F16 => "float16",
        DType.BF16 => "bfloat16",
        DType.I64 => "int64",
        DType.I32 => "int32",
        DType.I16 => "int16",
        DType.I8 => "int8",
        DType.U8 => "uint8",
        DType.Bool => "bool",
        _ => $"DType {(int)dtype}",
    };

    /// <summary>The declared signature of a graph input/output; dims are numbers or symbolic names ("?" when unnamed).</summary>
    public static TensorSignature Signature(string model, string name, NodeMetadata meta)
    {
        if (!meta.IsTensor || !TryDType(meta.ElementDataType, out var dtype))
        {
            string found = meta.IsTensor ? meta.ElementDataType.ToString() : meta.OnnxValueType.ToString();
            throw ValidateThrow.Invalid(model, $"graph value {name}", found,
                $"a tensor of {SupportedNames}");
        }
        var dims = new string[meta.Dimensions.Length];
        for (int i = 0; i < dims.Length; i++)
        {
            string symbol = i < meta.SymbolicDimensions.Length ? meta.SymbolicDimensions[i] : "";
            dims[i] = meta.Dimensions[i] >= 0 ? meta.Dimensions[i].ToString(System.Globalization.CultureInfo.InvariantCulture)
                : symbol.Length > 0 ? symbol : "?";
        }
        return new TensorSignature(name, dtype, dims);
    }

    /// <summary>Copies a CPU output tensor to a float array (float16/bfloat16/float64/int/bool converted).</summary>
    public static HostTensor ToHost(string name, OrtValue value)
    {
        var info = value.GetTensorTypeAndShape();
        if (!TryDType(info.ElementDataType, out var dtype))
        {
            throw ValidateThrow.Invalid($"output {name}", $"element type {info.ElementDataType} cannot be compared.");
        }
        long[] shape = info.Shape;
        long count = info.ElementCount;
        if (count > Array.MaxLength)
        {
            throw ValidateThrow.Invalid($"output {name}", $"{count} elements are more than one array holds.");
        }
        var data = new float[count];
        switch (dtype)
        {
            case DType.F32:
                value.GetTensorDataAsSpan<float>().CopyTo(data);
                break;
            case DType.F16:
                Convert(value.GetTensorDataAsSpan<Float16>(), data, static h => h.ToFloat());
                break;
            case DType.BF16:
                Convert(value.GetTensorDataAsSpan<BFloat16>(), data, static h => h.ToFloat());
                break;
            case DType.F64:
                Convert(value.GetTensorDataAsSpan<double>(), data, static d => (float)d);
                break;
            case DType.I64:
                Convert(value.GetTensorDataAsSpan<long>(), data, static v => v);
                break;
            case DType.I32:
                Convert(value.GetTensorDataAsSpan<int>(), data, static v => v);
                break;
            case DType.Bool:
                Convert(value.GetTensorDataAsSpan<bool>(), data, static v => v ? 1f : 0f);
                break;
        }
        return new HostTensor(name, dtype, shape, data);
    }

    private static void Convert<T>(ReadOnlySpan<T> source, float[] destination, Func<T, float> convert)
    {
        for (int i = 0; i < source.Length; i++)
        {
            destination[i] = convert(source[i]);
        }
    }
}

/// <summary>An output copied to the host as floats, with its original element type and shape.</summary>
internal sealed record HostTensor(string Name, DType ElementType, long[] Shape, float[] Data);
