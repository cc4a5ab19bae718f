using OnnxLora.Core.HuggingFace;
using OnnxLora.Models.Internals;
using OnnxLora.Models.Lora;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace OnnxLora.Models.Llama;

/// <summary>
/// The LLaMA-family decoder stack (Hugging Face <c>LlamaModel</c>, registered as <c>model</c>):
/// embed_tokens → layers → norm. Forward gives the final normed hidden states [batch, seq, hidden].
/// </summary>
public sealed partial class LlamaModel : nn.Module<Tensor, Tensor?, Tensor?, Tensor>, IChildReplaceable
{
    public LlamaModel(LlamaConfig config) : base(nameof(LlamaModel))
    {
        Config = config;
        EmbedTokens = LayerFactory.Embedding(config.VocabSize, config.HiddenSize, LayerFactory.PaddingIndex(config.PadTokenId, config.VocabSize));
        Layers = nn.ModuleList(Enumerable.Range(0, config.NumHiddenLayers).Select(_ => new LlamaDecoderLayer(config)).ToArray());
        Norm = new LlamaRmsNorm(config.HiddenSize, config.RmsNormEps);
        RotaryEmb = new LlamaRotaryEmbedding(config);
        RegisterComponents();
    }

    public LlamaConfig Config { get; }

    /// <summary><c>embed_tokens</c>: an Embedding [vocab, hidden], or its LoRA wrapper.</summary>
    [field: ComponentName(Name = "embed_tokens")]
    public nn.Module<Tensor, Tensor> EmbedTokens { get; private set; }

    /// <summary><c>layers</c>: the decoder blocks, registered as <c>layers.{i}</c>.</summary>
    [field: ComponentName(Name = "layers")]
    public ModuleList<LlamaDecoderLayer> Layers { get; }

    /// <summary><c>norm</c>: the final RMS norm.</summary>
    [field: ComponentName(Name = "norm")]
    public LlamaRmsNorm Norm { get; }

    /// <summary><c>rotary_emb</c>: computes cos/sin from position ids (no parameters).</summary>
    [field: ComponentName(Name = "rotary_emb")]
    public LlamaRotaryEmbedding RotaryEmb { get; }

    /// <summary>
    /// Recompute each decoder layer's forward during backward instead of keeping its activations
    /// (transformers' <c>gradient_checkpointing</c>); applies in training mode with autograd on. Default false.
    /// </summary>
    public bool GradientCheckpointing { get; set; }

    /// <summary>
    /// With <see cref="GradientCheckpointing"/>: checkpoint only the first this many decoder layers and keep the activations
    /// of the rest (Megatron-LM's "block" recomputation): less recomputation for more memory. Null (default) or a count at
    /// least the number of layers checkpoints every layer. The last layers are the ones left out: backward reaches them
    /// first, so their activations are freed soonest.
    /// </summary>
    public int? GradientCheckpointingLayers { get; set; }

    /// <summary>With <see cref="GradientCheckpointing"/>: what a checkpointed layer recomputes. Default <see cref="GradientCheckpointingGranularity.Full"/>.</summary>
    public GradientCheckpointingGranularity GradientCheckpointingGranularity { get; set; }

    /// <summary>The input embedding matrix [vocab, hidden] (the base weight when embed_tokens is wrapped).</summary>
    public Parameter EmbeddingWeight => EmbedTokens switch
    {
        Embedding e => LayerFactory.RegisteredWeight(e),
        LoraEmbedding w => LayerFactory.RegisteredWeight(w.BaseLayer),
        _ => throw new InvalidOperationException($"embed_tokens is a {EmbedTokens.GetType().Name}, expected an Embedding or a LoRA wrapper of one."),
    };

    /// <param name="inputIds">Token ids [batch, seq], int64.</param>
    /// <param name="attentionMask">1 for real tokens and 0 for padding [batch, seq] (int64; left or right padding), or null for none.</param>
    /// <param name="positionIds">Positions [batch, seq] (int64), or null for 0..seq-1 in every row.</param>
    public override Tensor forward(Tensor inputIds, Tensor? attentionMask, Tensor? positionIds) => forward(inputIds, attentionMask, positionIds, null);

    /// <summary>
    /// As <see cref="forward(Tensor, Tensor?, Tensor?)"/>, continuing the tokens held in <paramref name="cache"/> (which
    /// this call extends by <paramref name="inputIds"/>'s tokens): the new tokens are the total sequence's last seq
    /// positions. The same inputs and math as the with-past ONNX emission (<see cref="EmitOnnx"/>).
    /// </summary>
    /// <param name="inputIds">The new tokens' ids [batch, seq], int64.</param>
    /// <param name="attentionMask">1/0 [batch, past + seq] over the cached and the new tokens (left padding of a batch stays
    /// in it for every later step), or null for no padding.</param>
    /// <param name="positionIds">The new tokens' positions [batch, seq] (for a left-padded batch, cumsum(mask) − 1 as
    /// <see cref="PositionIdsFromMask"/> gives, its last seq columns), or null for past..past+seq−1 in every row.</param>
    /// <param name="cache">The cache of this model's layers to read and extend, or null for none.</param>
    public Tensor forward(Tensor inputIds, Tensor? attentionMask, Tensor? positionIds, KeyValueCache? cache)
    {
        InputChecks.TokenIds(inputIds, Config.VocabSize, nameof(inputIds));
        long batch = inputIds.shape[0], seq = inputIds.shape[1], past = cache?.Length ?? 0;
        if (cache is not null && cache.LayerCount != Layers.Count)
        {
            throw ModelThrow.Misuse(nameof(cache), "key/value cache", $"{cache.LayerCount} layers", $"{Layers.Count} layers like the model");
        }
        InputChecks.IntegerOfShape(attentionMask, [batch, past + seq], nameof(attentionMask), "[batch, past + seq] over the cached and the new tokens");
        InputChecks.SameShape(positionIds, inputIds, nameof(positionIds));
        using var scope = NewDisposeScope();
        positionIds ??= arange(past, past + seq, ScalarType.Int64, inputIds.device).unsqueeze(0).expand(batch, seq);
        var (cos, sin) = RotaryEmb.call(positionIds);
        var mask = BuildAttentionMask(attentionMask, batch, seq, past, Config.SlidingWindow, inputIds.device);
        var h = EmbedTokens.call(inputIds);
        bool checkpointing = GradientCheckpointing && training && is_grad_enabled() && cache is null;
        int checkpointed = checkpointing ? Math.Min(GradientCheckpointingLayers ?? Layers.Count, Layers.Count) : 0;
        for (int i = 0; i < Layers.Count; i++)
        {
            var layer = Layers[i];
            h = i >= checkpointed ? layer.forward(h, cos, sin, mask, cache, i)
                : GradientCheckpointingGranularity == GradientCheckpointingGranularity.Selective ? layer.ForwardRecomputingMlp(h, cos, sin, mask)
                : GradientCheckpoint.Apply((x, c) => layer.call(x, c[0]!, c[1]!, c[2]), h, cos, sin, mask);
        }
        return Norm.call(h).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The additive attention mask [batch or 1, 1, seq, past + seq] for the new tokens at positions past..past+seq−1:
    /// 0 where query i may attend key j (j ≤ i, key not padding, and i − j &lt; window when a sliding window is set),
    /// float.MinValue elsewhere; null when every query attends every key up to its own (no padding in any row, no
    /// window shorter than the keys, and no past or a single new token), which the attention computes without a mask.
    /// </summary>
    internal static Tensor? BuildAttentionMask(Tensor? attentionMask, long batch, long seq, long past, int? slidingWindow, Device device)
    {
        using var scope = NewDisposeScope();
        long total = past + seq;
        bool windowed = slidingWindow is int w && w < total;
        if (!windowed && (past == 0 || seq == 1) && (attentionMask is null || attentionMask.ne(0).all().item<bool>()))
        {
            return null;
        }
        var query = arange(past, total, ScalarType.Int64, device).unsqueeze(1);
        var key = arange(total, ScalarType.Int64, device).unsqueeze(0);
        var allowed = key <= query;
        if (slidingWindow is int window)
        {
            allowed = allowed.logical_and(query - key < window);
        }
        allowed = allowed.unsqueeze(0).unsqueeze(0);
        if (attentionMask is not null)
        {
            allowed = allowed.logical_and(attentionMask.ne(0).view(batch, 1, 1, total));
        }
        var mask = zeros(allowed.shape, ScalarType.Float32, device).masked_fill(allowed.logical_not(), float.MinValue);
        return mask.MoveToOuterDisposeScope();
    }

    /// <summary>Position ids that count only real tokens: cumsum(mask) − 1, clamped at 0 (for left-padded batches).</summary>
    public static Tensor PositionIdsFromMask(Tensor attentionMask)
    {
        using var scope = NewDisposeScope();
        var positions = attentionMask.to(ScalarType.Int64).cumsum(1) - 1;
        return positions.clamp_min(0).MoveToOuterDisposeScope();
    }

    void IChildReplaceable.ReplaceChild(string name, nn.Module<Tensor, Tensor> replacement)
    {
        if (name != "embed_tokens")
        {
            throw ModelThrow.Misuse(nameof(name), $"{nameof(LlamaModel)} has no replaceable child '{name}'");
        }
        EmbedTokens = replacement;
        _internal_submodules[name] = replacement;
    }
}
