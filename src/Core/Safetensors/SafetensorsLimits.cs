namespace OnnxLora.Core.Safetensors;

/// <summary>Bounds applied when reading untrusted safetensors files.</summary>
public sealed record SafetensorsLimits
{
    /// <summary>Largest JSON header accepted, in bytes (the reference implementation uses 100 MB).</summary>
    public long MaxHeaderBytes { get; init; } = 100_000_000;

    /// <summary>Most tensors one file may declare.</summary>
    public int MaxTensors { get; init; } = 1_000_000;

    /// <summary>Most dimensions one tensor may have.</summary>
    public int MaxRank { get; init; } = 16;

    /// <summary>The defaults.</summary>
    public static SafetensorsLimits Default { get; } = new();
}
