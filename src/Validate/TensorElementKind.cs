namespace OnnxLora.Validate;

/// <summary>Element types of the tensors a validation run feeds and compares.</summary>
public enum TensorElementKind
{
    Float32,
    Float16,
    BFloat16,
    Float64,
    Int64,
    Int32,
    Bool,
}

/// <summary>Names of <see cref="TensorElementKind"/> values as the report writes them.</summary>
public static class TensorElementKinds
{
    /// <summary>The ONNX spelling: "float32", "float16", "bfloat16", "float64", "int64", "int32", "bool".</summary>
    public static string OnnxName(this TensorElementKind kind) => kind switch
    {
        TensorElementKind.Float32 => "float32",
        TensorElementKind.Float16 => "float16",
        TensorElementKind.BFloat16 => "bfloat16",
        TensorElementKind.Float64 => "float64",
        TensorElementKind.Int64 => "int64",
        TensorElementKind.Int32 => "int32",
        TensorElementKind.Bool => "bool",
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "unknown element kind"),
    };
}
