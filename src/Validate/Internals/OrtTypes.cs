using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace OnnxLora.Validate.Internals;

/// <summary>Mapping between ONNX Runtime element types and <see cref="TensorElementKind"/>, and host copies of outputs.</summary>
internal static class OrtTypes
{
    public static bool TryKind(TensorElementType type, out TensorElementKind kind)
    {
        switch (type)
        {
            case TensorElementType.Float: kind = TensorElementKind.Float32; return true;
            case TensorElementType.Float16: kind = TensorElementKind.Float16; return true;
            case TensorElementType.BFloat16: kind = TensorElementKind.BFloat16; return true;
            case TensorElementType.Double: kind = TensorElementKind.Float64; return true;
            case TensorElementType.Int64: kind = TensorElementKind.Int64; return true;
            case TensorElementType.Int32: kind = TensorElementKind.Int32; return true;
            case TensorElementType.Bool: kind = TensorElementKind.Bool; return true;
            default: kind = default; return false;
        }
    }

    public static TensorElementType ToOrt(TensorElementKind kind) => kind switch
    {
        TensorElementKind.Float32 => TensorElementType.Float,
        TensorElementKind.Float16 => TensorElementType.Float16,
        TensorElementKind.BFloat16 => TensorElementType.BFloat16,
        TensorElementKind.Float64 => TensorElementType.Double,
        TensorElementKind.Int64 => TensorElementType.Int64,
        TensorElementKind.Int32 => TensorElementType.Int32,
        TensorElementKind.Bool => TensorElementType.Bool,
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "unknown element kind"),
    };

    /// <summary>The declared signature of a graph input/output; dims are numbers or symbolic names ("?" when unnamed).</summary>
    public static TensorSignature Signature(string model, string name, NodeMetadata meta)
    {
        if (!meta.IsTensor || !TryKind(meta.ElementDataType, out var kind))
        {
            string found = meta.IsTensor ? meta.ElementDataType.ToString() : meta.OnnxValueType.ToString();
            throw ValidateThrow.Invalid(model, $"graph value {name}", found,
                "a tensor of float32, float16, bfloat16, float64, int64, int32 or bool");
        }
        var dims = new string[meta.Dimensions.Length];
        for (int i = 0; i < dims.Length; i++)
        {
            string symbol = i < meta.SymbolicDimensions.Length ? meta.SymbolicDimensions[i] : "";
            dims[i] = meta.Dimensions[i] >= 0 ? meta.Dimensions[i].ToString(System.Globalization.CultureInfo.InvariantCulture)
                : symbol.Length > 0 ? symbol : "?";
        }
        return new TensorSignature(name, kind, dims);
    }

    /// <summary>Copies a CPU output tensor to a float array (float16/bfloat16/float64/int/bool converted).</summary>
    public static HostTensor ToHost(string name, OrtValue value)
    {
        var info = value.GetTensorTypeAndShape();
        if (!TryKind(info.ElementDataType, out var kind))
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
        switch (kind)
        {
            case TensorElementKind.Float32:
                value.GetTensorDataAsSpan<float>().CopyTo(data);
                break;
            case TensorElementKind.Float16:
                Convert(value.GetTensorDataAsSpan<Float16>(), data, static h => h.ToFloat());
                break;
            case TensorElementKind.BFloat16:
                Convert(value.GetTensorDataAsSpan<BFloat16>(), data, static h => h.ToFloat());
                break;
            case TensorElementKind.Float64:
                Convert(value.GetTensorDataAsSpan<double>(), data, static d => (float)d);
                break;
            case TensorElementKind.Int64:
                Convert(value.GetTensorDataAsSpan<long>(), data, static v => v);
                break;
            case TensorElementKind.Int32:
                Convert(value.GetTensorDataAsSpan<int>(), data, static v => v);
                break;
            case TensorElementKind.Bool:
                Convert(value.GetTensorDataAsSpan<bool>(), data, static v => v ? 1f : 0f);
                break;
        }
        return new HostTensor(name, kind, shape, data);
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
internal sealed record HostTensor(string Name, TensorElementKind ElementType, long[] Shape, float[] Data);
