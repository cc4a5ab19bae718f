namespace OnnxLora.Models;

/// <summary>
/// What a checkpointed layer recomputes in backward (Megatron-LM's <c>--recompute-granularity full|selective</c>; the
/// layers it applies to are chosen separately, all or the first N).
/// </summary>
public enum GradientCheckpointingGranularity
{
    /// <summary>The whole layer: only its input is kept (transformers' <c>gradient_checkpointing</c>). Least memory, about one more forward of the layer.</summary>
    Full,

    /// <summary>
    /// Only the feed-forward block up to its activation: the up-projections (LLaMA's gate_proj and up_proj, BERT's
    /// intermediate.dense) and the activation (silu(gate)·up, GELU), from the block's input, which is kept; the attention's
    /// activations, the norms and the down-projection are not recomputed. Those are the largest of a layer's saved tensors
    /// (the intermediate size is ~2.75–4× the hidden size, and LLaMA keeps three of them), while their recomputation is one
    /// or two of the layer's GEMMs: measured at hidden 1024 / seq 1024, half of the memory whole-layer recomputation saves
    /// for about two fifths of its extra compute (docs/benchmarks-training.md §12).
    /// </summary>
    Selective,
}
