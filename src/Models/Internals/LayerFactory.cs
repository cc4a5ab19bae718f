using TorchSharp.Modules;
using static TorchSharp.torch;

namespace OnnxLora.Models.Internals;

/// <summary>Layer factories that allocate without random initialisation (weights are loaded or initialised afterwards).</summary>
internal static class LayerFactory
{
    public static Linear Linear(long inFeatures, long outFeatures, bool bias) =>
        nn.Linear(new Parameter(empty(outFeatures, inFeatures)), bias ? new Parameter(zeros(outFeatures)) : null);

    public static Embedding Embedding(long count, long dim, long? paddingIndex) =>
        nn.Embedding(count, dim, padding_idx: paddingIndex);

    public static LayerNorm LayerNorm(long dim, double eps) => nn.LayerNorm(dim, eps);

    /// <summary>
    /// The Parameter object an Embedding registered as "weight". Its <c>weight</c> property returns a new
    /// handle on each call; sharing the registered object (tied lm_head) keeps <c>named_parameters()</c>
    /// listing the tensor once.
    /// </summary>
    public static Parameter RegisteredWeight(Embedding embedding) =>
        embedding.get_parameter("weight") ?? throw new InvalidOperationException("embedding has no registered weight.");

    /// <summary>The padding index HF passes to nn.Embedding, when it is a valid row.</summary>
    public static long? PaddingIndex(long? padTokenId, long vocabSize) =>
        padTokenId is long p && p >= 0 && p < vocabSize ? p : null;
}
