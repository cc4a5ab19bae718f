using OnnxLora.Core.HuggingFace;
using OnnxLora.Models.Internals;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace OnnxLora.Models.Bert;

/// <summary>
/// Bidirectional multi-head attention: softmax(q·kᵀ/√d + mask)·v over all heads, concatenated
/// (no output projection here; that is <see cref="BertSelfOutput"/>). Children <c>query</c>,
/// <c>key</c>, <c>value</c>: Linear [hidden, hidden] with bias, or LoRA wrappers.
/// </summary>
public sealed partial class BertSelfAttention : nn.Module<Tensor, Tensor?, Tensor>, IChildReplaceable
{
    public BertSelfAttention(BertConfig config) : base(nameof(BertSelfAttention))
    {
        NumHeads = config.NumAttentionHeads;
        HeadDim = config.HeadDim;
        AttentionDropout = config.AttentionProbsDropoutProb;
        Query = LayerFactory.Linear(config.HiddenSize, config.HiddenSize, bias: true);
        Key = LayerFactory.Linear(config.HiddenSize, config.HiddenSize, bias: true);
        Value = LayerFactory.Linear(config.HiddenSize, config.HiddenSize, bias: true);
        RegisterComponents();
    }

    [field: ComponentName(Name = "query")]
    public nn.Module<Tensor, Tensor> Query { get; private set; }

    [field: ComponentName(Name = "key")]
    public nn.Module<Tensor, Tensor> Key { get; private set; }

    [field: ComponentName(Name = "value")]
    public nn.Module<Tensor, Tensor> Value { get; private set; }

    public int NumHeads { get; }

    public int HeadDim { get; }

    /// <summary>Dropout on attention probabilities, applied only in training mode.</summary>
    public double AttentionDropout { get; }

    /// <param name="hidden">[batch, seq, hidden].</param>
    /// <param name="mask">Additive mask [batch, 1, 1, seq] (0 keep, float.MinValue for padding keys), or null.</param>
    public override Tensor forward(Tensor hidden, Tensor? mask)
    {
        using var scope = NewDisposeScope();
        long batch = hidden.shape[0], seq = hidden.shape[1];
        Tensor Heads(Tensor t) => t.view(batch, seq, NumHeads, HeadDim).transpose(1, 2);
        var q = Heads(Query.call(hidden));
        var k = Heads(Key.call(hidden));
        var v = Heads(Value.call(hidden));
        var scores = q.matmul(k.transpose(2, 3)) / Math.Sqrt(HeadDim);
        if (mask is not null)
        {
            scores = scores + mask;
        }
        var probs = scores.softmax(-1);
        if (training && AttentionDropout > 0)
        {
            probs = nn.functional.dropout(probs, AttentionDropout, training: true);
        }
        var context = probs.matmul(v).transpose(1, 2).reshape(batch, seq, (long)NumHeads * HeadDim);
        return context.MoveToOuterDisposeScope();
    }

    void IChildReplaceable.ReplaceChild(string name, nn.Module<Tensor, Tensor> replacement)
    {
        switch (name)
        {
            case "query": Query = replacement; break;
            case "key": Key = replacement; break;
            case "value": Value = replacement; break;
            default: throw ModelThrow.Misuse(nameof(name), $"{nameof(BertSelfAttention)} has no replaceable child '{name}'");
        }
        _internal_submodules[name] = replacement;
    }
}
