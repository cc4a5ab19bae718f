using OnnxLora.Core.HuggingFace;
using OnnxLora.Models.Internals;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace OnnxLora.Models.Llama;

/// <summary>
/// Multi-head self-attention with rotary embeddings and grouped-query attention: q has
/// <see cref="NumHeads"/> heads, k and v <see cref="NumKeyValueHeads"/> heads, each k/v head shared
/// by <see cref="NumHeads"/>/<see cref="NumKeyValueHeads"/> consecutive q heads.
/// scores = q·kᵀ/√d + mask; output = o_proj(softmax(scores)·v), computed by libtorch's
/// <c>scaled_dot_product_attention</c> (the same formula; on CPU a fused kernel that keeps no
/// [batch, heads, seq, seq] probabilities for backward).
/// </summary>
public sealed partial class LlamaAttention : nn.Module<Tensor, Tensor, Tensor, Tensor?, Tensor>, IChildReplaceable
{
    public LlamaAttention(LlamaConfig config) : base(nameof(LlamaAttention))
    {
        NumHeads = config.NumAttentionHeads;
        NumKeyValueHeads = config.NumKeyValueHeads;
        HeadDim = config.HeadDim;
        AttentionDropout = config.AttentionDropout;
        QProj = LayerFactory.Linear(config.HiddenSize, (long)NumHeads * HeadDim, config.QkvBias);
        KProj = LayerFactory.Linear(config.HiddenSize, (long)NumKeyValueHeads * HeadDim, config.QkvBias);
        VProj = LayerFactory.Linear(config.HiddenSize, (long)NumKeyValueHeads * HeadDim, config.QkvBias);
        OProj = LayerFactory.Linear((long)NumHeads * HeadDim, config.HiddenSize, config.OutputProjectionBias);
        RegisterComponents();
    }

    /// <summary><c>q_proj</c>: Linear [heads·d, hidden] (bias for qwen2), or its LoRA wrapper.</summary>
    [field: ComponentName(Name = "q_proj")]
    public nn.Module<Tensor, Tensor> QProj { get; private set; }

    /// <summary><c>k_proj</c>: Linear [kv_heads·d, hidden], or its LoRA wrapper.</summary>
    [field: ComponentName(Name = "k_proj")]
    public nn.Module<Tensor, Tensor> KProj { get; private set; }

    /// <summary><c>v_proj</c>: Linear [kv_heads·d, hidden], or its LoRA wrapper.</summary>
    [field: ComponentName(Name = "v_proj")]
    public nn.Module<Tensor, Tensor> VProj { get; private set; }

    /// <summary><c>o_proj</c>: Linear [hidden, heads·d], or its LoRA wrapper.</summary>
    [field: ComponentName(Name = "o_proj")]
    public nn.Module<Tensor, Tensor> OProj { get; private set; }

    public int NumHeads { get; }

    public int NumKeyValueHeads { get; }

    public int HeadDim { get; }

    /// <summary>Dropout on attention probabilities, applied only in training mode.</summary>
    public double AttentionDropout { get; }

    /// <summary>The score scale 1/√d.</summary>
    public double Scaling => 1.0 / Math.Sqrt(HeadDim);

    /// <param name="hidden">[batch, seq, hidden].</param>
    /// <param name="cos">[batch, seq, d] from <see cref="LlamaRotaryEmbedding"/>.</param>
    /// <param name="sin">[batch, seq, d].</param>
    /// <param name="mask">Additive mask [batch or 1, 1, seq, seq] (0 allowed, float.MinValue masked), or null for plain causal
    /// attention (query i attends keys 0..i), which <see cref="LlamaModel"/> passes when no row has padding and no sliding window applies.</param>
    public override Tensor forward(Tensor hidden, Tensor cos, Tensor sin, Tensor? mask) => forward(hidden, cos, sin, mask, null, 0);

    /// <summary>
    /// As <see cref="forward(Tensor, Tensor, Tensor, Tensor?)"/>, with the new keys (after the rotation) and values
    /// appended to layer <paramref name="layerIndex"/> of <paramref name="cache"/> and attention over all the cached
    /// keys, the new queries being the last seq positions (the same math as <see cref="EmitOnnx"/> with a past).
    /// </summary>
    /// <param name="hidden">[batch, seq, hidden].</param>
    /// <param name="cos">[batch, seq, d] of the new tokens' positions.</param>
    /// <param name="sin">[batch, seq, d].</param>
    /// <param name="mask">Additive mask [batch or 1, 1, seq, past + seq], or null when every query attends every key up
    /// to its own position: plain causal without a past, or a single new token (seq 1).</param>
    /// <param name="cache">The cache to read and extend, or null for none (past 0).</param>
    /// <param name="layerIndex">This layer's index in <paramref name="cache"/>.</param>
    public Tensor forward(Tensor hidden, Tensor cos, Tensor sin, Tensor? mask, KeyValueCache? cache, int layerIndex)
    {
        using var scope = NewDisposeScope();
        long batch = hidden.shape[0], seq = hidden.shape[1];
        var q = QProj.call(hidden).view(batch, seq, NumHeads, HeadDim).transpose(1, 2);
        var k = KProj.call(hidden).view(batch, seq, NumKeyValueHeads, HeadDim).transpose(1, 2);
        var v = VProj.call(hidden).view(batch, seq, NumKeyValueHeads, HeadDim).transpose(1, 2);
        q = LlamaRotaryEmbedding.Apply(q, cos, sin);
        k = LlamaRotaryEmbedding.Apply(k, cos, sin);
        if (cache is not null)
        {
            if (mask is null && seq != 1 && cache[layerIndex] is not null)
            {
                throw ModelThrow.Misuse(nameof(mask), "attention mask", "null with a past and several new tokens", "an explicit mask [batch, 1, seq, past + seq]");
            }
            // Cached heads are unrepeated (num_kv_heads), as in Hugging Face's cache and the exported present.*.
            (k, v) = cache.Update(layerIndex, k, v);
        }
        int groups = NumHeads / NumKeyValueHeads;
        if (groups > 1)
        {
            k = k.repeat_interleave(groups, dim: 1);
            v = v.repeat_interleave(groups, dim: 1);
        }
        // libtorch's fused attention (flash kernel on CPU: no [batch, heads, seq, seq] probabilities kept for
        // backward); its default scale is 1/√d = Scaling. The same formula as HF's eager attention.
        // A null mask is plain causal attention: is_causal lets the kernel skip the blocks above the diagonal.
        // libtorch aligns is_causal's mask to the top left, so it means "causal" only when keys and queries are the same
        // positions; a single new token after a past attends every key and needs no mask at all.
        var attended = nn.functional.scaled_dot_product_attention(q, k, v, mask, training ? AttentionDropout : 0.0, is_casual: mask is null && k.shape[2] == seq);
        var context = attended.transpose(1, 2).reshape(batch, seq, (long)NumHeads * HeadDim);
        return OProj.call(context).MoveToOuterDisposeScope();
    }

    void IChildReplaceable.ReplaceChild(string name, nn.Module<Tensor, Tensor> replacement)
    {
        switch (name)
        {
            case "q_proj": QProj = replacement; break;
            case "k_proj": KProj = replacement; break;
            case "v_proj": VProj = replacement; break;
            case "o_proj": OProj = replacement; break;
            default: throw ModelThrow.Misuse(nameof(name), $"{nameof(LlamaAttention)} has no replaceable child '{name}'");
        }
        _internal_submodules[name] = replacement;
    }
}
