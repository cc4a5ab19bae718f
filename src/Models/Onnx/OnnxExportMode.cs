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

    /// <summary>
    /// Each LoRA layer emits its base path plus a branch whose factors are graph inputs — Aᵀ [in, r] and
    /// s·Bᵀ [r, out] under the adapter's PEFT keys, r symbolic — for ONNX Runtime's LoRA adapters
    /// (<c>.onnx_adapter</c> files, activated per run). Each input has an empty rank-0 default, so with
    /// no adapter active the graph computes the base model. DoRA cannot be expressed this way (its output
    /// scale depends on the base weight): such layers are refused.
    /// </summary>
    Adapters,
}
