namespace OnnxLora.Core;

/// <summary>Element types of stored tensors, named as safetensors names them.</summary>
public enum DType
{
    F64,
    F32,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

/// <summary>Sizes and names of <see cref="DType"/> values.</summary>
public static class DTypes
{
    /// <summary>Bytes per element.</summary>
    public static int SizeOf(this DType dtype) => dtype switch
    {
        DType.F64 or DType.I64 => 8,
        DType.F32 or DType.I32 => 4,
        DType.F16 or DType.BF16 or DType.I16 => 2,
        DType.I8 or DType.U8 or DType.Bool => 1,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "unknown dtype"),
    };

    /// <summary>True for the floating-point types.</summary>
    public static bool IsFloat(this DType dtype) => dtype is DType.F64 or DType.F32 or DType.F16 or DType.BF16;

    /// <summary>The name safetensors uses in its header ("F32", "BF16", "BOOL", ...).</summary>
    public static string SafetensorsName(this DType dtype) => dtype == DType.Bool ? "BOOL" : dtype.ToString();

    /// <summary>Parses a safetensors dtype name; false for names this project does not handle.</summary>
    public static bool TryParseSafetensorsName(string name, out DType dtype)
    {
        switch (name)
        {
            case "F64": dtype = DType.F64; return true;
            case "F32": dtype = DType.F32; return true;
            case "F16": dtype = DType.F16; return true;
            case "BF16": dtype = DType.BF16; return true;
            case "I64": dtype = DType.I64; return true;
            case "I32": dtype = DType.I32; return true;
            case "I16": dtype = DType.I16; return true;
            case "I8": dtype = DType.I8; return true;
            case "U8": dtype = DType.U8; return true;
            case "BOOL": dtype = DType.Bool; return true;
            default: dtype = default; return false;
        }
    }

    /// <summary>Parses the Hugging Face <c>torch_dtype</c> spelling ("float32", "bfloat16", ...).</summary>
    public static bool TryParseTorchName(string name, out DType dtype)
    {
        switch (name)
        {
            case "float32" or "float": dtype = DType.F32; return true;
            case "float16" or "half": dtype = DType.F16; return true;
            case "bfloat16": dtype = DType.BF16; return true;
            case "float64" or "double": dtype = DType.F64; return true;
            default: dtype = default; return false;
        }
    }
}
