namespace OnnxLora.Core.Onnx;

/// <summary>One dimension of a graph input/output shape: a fixed size or a symbolic name ("batch").</summary>
public readonly record struct OnnxDim
{
    private OnnxDim(long? value, string? param)
    {
        Value = value;
        Param = param;
    }

    /// <summary>The fixed size, when fixed.</summary>
    public long? Value { get; }

    /// <summary>The symbolic name, when symbolic.</summary>
    public string? Param { get; }

    /// <summary>A fixed dimension.</summary>
    public static OnnxDim Fixed(long value)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(value);
        return new(value, null);
    }

    /// <summary>A symbolic dimension.</summary>
    public static OnnxDim Symbolic(string name)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        return new(null, name);
    }

    public static implicit operator OnnxDim(long value) => Fixed(value);

    public static implicit operator OnnxDim(string name) => Symbolic(name);

    public override string ToString() => Param ?? Value?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "?";
}
