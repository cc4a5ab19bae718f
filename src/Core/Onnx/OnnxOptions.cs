namespace OnnxLora.Core.Onnx;

/// <summary>When initializer data goes to a separate file next to the model.</summary>
public enum OnnxExternalData
{
    /// <summary>Only when the model would not fit in one protobuf file (over 2 GiB).</summary>
    Auto,

    /// <summary>Always: every initializer of at least <see cref="OnnxSaveOptions.ExternalThresholdBytes"/> bytes.</summary>
    Always,

    /// <summary>Never; a model over 2 GiB is then an error.</summary>
    Never,
}

/// <summary>Bounds and choices for <see cref="OnnxFile.Load"/>.</summary>
public sealed record OnnxLoadOptions
{
    /// <summary>
    /// Read external initializer data into each tensor's raw_data (default true). When false the
    /// references are still validated (location, offset, length) but the data is not read.
    /// </summary>
    public bool LoadExternalData { get; init; } = true;

    /// <summary>Deepest message nesting accepted while parsing (default 100, as protobuf's own default).</summary>
    public int RecursionLimit { get; init; } = 100;

    /// <summary>Check that every node input names a graph input, an initializer or an earlier node's output (default true).</summary>
    public bool ValidateGraph { get; init; } = true;

    /// <summary>The defaults.</summary>
    public static OnnxLoadOptions Default { get; } = new();
}

/// <summary>Choices for <see cref="OnnxFile.Save"/>.</summary>
public sealed record OnnxSaveOptions
{
    /// <summary>External data policy (default <see cref="OnnxExternalData.Auto"/>).</summary>
    public OnnxExternalData ExternalData { get; init; } = OnnxExternalData.Auto;

    /// <summary>Initializers smaller than this stay inside the .onnx file when data goes external (default 1024 bytes).</summary>
    public long ExternalThresholdBytes { get; init; } = 1024;

    /// <summary>Replace existing output files (default false: an existing output is an error).</summary>
    public bool Overwrite { get; init; }

    /// <summary>The defaults.</summary>
    public static OnnxSaveOptions Default { get; } = new();
}
