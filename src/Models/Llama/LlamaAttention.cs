using OnnxLora.Core.HuggingFace;
using OnnxLora.Models.Internals;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace OnnxLora.Models.Llama;

/// <summary>
/// Multi-head self-attention with rotary embeddings and grouped-query attention: q has
/// <see cref="NumHeads"/> heads, k and v <see cref="NumKeyValueHeads"/> heads, each k/v head shared
/// by <see cref="NumHeads"/>/<see cref="NumKeyValueHeads"/> consecutive q heads.
/// scores = q·kᵀ/√d + mask; output = o_proj(softmax(scores)·v).
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
    /// <param name="mask">Additive mask [batch, 1, seq, seq] (0 allowed, float.MinValue masked), or null for none.</param>
    public override Tensor forward(Tensor hidden, Tensor cos, Tensor sin, Tensor? mask)
    {
        using var scope = NewDisposeScope();
        long batch = hidden.shape[0], seq = hidden.shape[1];
        var q = QProj.call(hidden).view(batch, seq, NumHeads, HeadDim).transpose(1, 2);
        var k = KProj.call(hidden).view(batch, seq, NumKeyValueHeads, HeadDim).transpose(1, 2);
        var v = VProj.call(hidden).view(batch, seq, NumKeyValueHeads, HeadDim).transpose(1, 2);
        q = LlamaRotaryEmbedding.Apply(q, cos, sin);
        k = LlamaRotaryEmbedding.Apply(k, cos, sin);
        int groups = NumHeads / NumKeyValueHeads;
        if (groups > 1)
        {
            k = k.repeat_interleave(groups, dim: 1);
            v = v.repeat_interleave(groups, dim: 1);
        }
        var scores = q.matmul(k.transpose(2, 3)) * Scaling;
        if (mask is not null)
        {
            scores = scores + mask;
        }
        var probs = scores.softmax(-1, ScalarType.Float32).to(q.dtype);
        if (AttentionDropout > 0 && training)
        {
            probs = nn.functional.dropout(probs, AttentionDropout, training: true);
        }
        var context = probs.matmul(v).transpose(1, 2).reshape(batch, seq, (long)NumHeads * HeadDim);
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
