namespace OnnxLora.Models.Onnx;

/// <summary>How LoRA layers appear in an exported graph.</summary>
public enum OnnxExportMode
{
    /// <summary>The base model only: every LoRA layer emits its base weight, the adapter is left out.</summary>
    Base,

    /// <summary>Each LoRA layer emits one folded weight W' = W + ΔW (from the merge engine).</summary>
    Merged,

    /// <summary>Each LoRA layer emits its base path plus the adapter branch as separate nodes and initializers.</summary>
    Unmerged,
}
