using TorchSharp.Modules;
using static TorchSharp.torch;

namespace OnnxLora.Models.Internals;

/// <summary>
/// Layer factories that allocate without random initialisation (weights are loaded or initialised afterwards).
/// Inside <see cref="WithoutWeights"/> they allocate on TorchSharp's meta device: shapes and no data, the
/// modules an export emits from while the weights stay in the checkpoint.
/// </summary>
internal static class LayerFactory
{
    [ThreadStatic]
    private static Device? _device;

    public static Linear Linear(long inFeatures, long outFeatures, bool bias) =>
        nn.Linear(new Parameter(empty([outFeatures, inFeatures], device: _device)), bias ? new Parameter(zeros([outFeatures], device: _device)) : null);

    public static Embedding Embedding(long count, long dim, long? paddingIndex)
    {
        if (_device is null)
        {
            return nn.Embedding(count, dim, padding_idx: paddingIndex);
        }
        // nn.Embedding(device: meta) and Embedding_from_pretrained(meta weight) both leave a CPU weight of the full size
        // (measured, TorchSharp 0.107): start from a 1×1 table and give it a meta weight of the real shape.
        var embedding = nn.Embedding(1, 1);
        embedding.weight = new Parameter(empty([count, dim], device: _device));
        return embedding;
    }

    public static LayerNorm LayerNorm(long dim, double eps) => nn.LayerNorm(dim, eps, device: _device);

    /// <summary>A parameter of ones (norm scales).</summary>
    public static Parameter Ones(long dim) => new(ones([dim], device: _device));

    /// <summary>Until disposed, layers made on this thread hold no data (meta device).</summary>
    public static IDisposable WithoutWeights() => new DeviceScope(new Device(TorchSharp.DeviceType.META));

    private sealed class DeviceScope : IDisposable
    {
        private readonly Device? _previous = _device;

        public DeviceScope(Device device) => _device = device;

        public void Dispose() => _device = _previous;
    }

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
