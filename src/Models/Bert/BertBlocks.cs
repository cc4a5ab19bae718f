using OnnxLora.Core.HuggingFace;
using OnnxLora.Models.Internals;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace OnnxLora.Models.Bert;

/// <summary>
/// Post-LN residual projection used after attention (<c>attention.output</c>, <see cref="BertSelfOutput"/>)
/// and after the feed-forward (<c>output</c>, <see cref="BertOutput"/>): LayerNorm(dropout(dense(h)) + residual).
/// </summary>
public abstract partial class BertResidualProjection : nn.Module<Tensor, Tensor, Tensor>, IChildReplaceable
{
    private protected BertResidualProjection(string name, BertConfig config, long inFeatures) : base(name)
    {
        HiddenDropout = config.HiddenDropoutProb;
        Dense = LayerFactory.Linear(inFeatures, config.HiddenSize, bias: true);
        LayerNorm = LayerFactory.LayerNorm(config.HiddenSize, config.LayerNormEps);
        RegisterComponents();
    }

    /// <summary><c>dense</c>: Linear with bias, or its LoRA wrapper.</summary>
    [field: ComponentName(Name = "dense")]
    public nn.Module<Tensor, Tensor> Dense { get; private set; }

    [field: ComponentName(Name = "LayerNorm")]
    public LayerNorm LayerNorm { get; }

    public double HiddenDropout { get; }

    /// <param name="hidden">Input of dense.</param>
    /// <param name="residual">[batch, seq, hidden] added before the norm.</param>
    public override Tensor forward(Tensor hidden, Tensor residual)
    {
        using var scope = NewDisposeScope();
        var projected = Dense.call(hidden);
        if (training && HiddenDropout > 0)
        {
            projected = nn.functional.dropout(projected, HiddenDropout, training: true);
        }
        return LayerNorm.call(projected + residual).MoveToOuterDisposeScope();
    }

    void IChildReplaceable.ReplaceChild(string name, nn.Module<Tensor, Tensor> replacement)
    {
        if (name != "dense")
        {
            throw ModelThrow.Misuse(nameof(name), $"{GetType().Name} has no replaceable child '{name}'");
        }
        Dense = replacement;
        _internal_submodules[name] = replacement;
    }
}

/// <summary><c>attention.output</c>: LayerNorm(dense(context) + input), dense [hidden, hidden].</summary>
public sealed partial class BertSelfOutput : BertResidualProjection
{
    public BertSelfOutput(BertConfig config) : base(nameof(BertSelfOutput), config, config.HiddenSize)
    {
    }
}

/// <summary><c>output</c>: LayerNorm(dense(intermediate) + attention output), dense [hidden, intermediate].</summary>
public sealed partial class BertOutput : BertResidualProjection
{
    public BertOutput(BertConfig config) : base(nameof(BertOutput), config, config.IntermediateSize)
    {
    }
}

/// <summary><c>attention</c>: self-attention followed by its residual projection.</summary>
public sealed partial class BertAttention : nn.Module<Tensor, Tensor?, Tensor>
{
    public BertAttention(BertConfig config) : base(nameof(BertAttention))
    {
        Self = new BertSelfAttention(config);
        Output = new BertSelfOutput(config);
        RegisterComponents();
    }

    [field: ComponentName(Name = "self")]
    public BertSelfAttention Self { get; }

    [field: ComponentName(Name = "output")]
    public BertSelfOutput Output { get; }

    public override Tensor forward(Tensor hidden, Tensor? mask)
    {
        using var scope = NewDisposeScope();
        return Output.call(Self.call(hidden, mask), hidden).MoveToOuterDisposeScope();
    }
}

/// <summary><c>intermediate</c>: gelu(dense(h)) with exact (erf) GELU, dense [intermediate, hidden].</summary>
public sealed partial class BertIntermediate : nn.Module<Tensor, Tensor>, IChildReplaceable
{
    public BertIntermediate(BertConfig config) : base(nameof(BertIntermediate))
    {
        Dense = LayerFactory.Linear(config.HiddenSize, config.IntermediateSize, bias: true);
        RegisterComponents();
    }

    [field: ComponentName(Name = "dense")]
    public nn.Module<Tensor, Tensor> Dense { get; private set; }

    public override Tensor forward(Tensor hidden)
    {
        using var scope = NewDisposeScope();
        return nn.functional.gelu(Dense.call(hidden)).MoveToOuterDisposeScope();
    }

    void IChildReplaceable.ReplaceChild(string name, nn.Module<Tensor, Tensor> replacement)
    {
        if (name != "dense")
        {
            throw ModelThrow.Misuse(nameof(name), $"{nameof(BertIntermediate)} has no replaceable child '{name}'");
        }
        Dense = replacement;
        _internal_submodules[name] = replacement;
    }
}

/// <summary>One post-LN encoder block (<c>encoder.layer.{i}</c>): attention, then intermediate + output.</summary>
public sealed partial class BertLayer : nn.Module<Tensor, Tensor?, Tensor>
{
    public BertLayer(BertConfig config) : base(nameof(BertLayer))
    {
        Attention = new BertAttention(config);
        Intermediate = new BertIntermediate(config);
        Output = new BertOutput(config);
        RegisterComponents();
    }

    [field: ComponentName(Name = "attention")]
    public BertAttention Attention { get; }

    [field: ComponentName(Name = "intermediate")]
    public BertIntermediate Intermediate { get; }

    [field: ComponentName(Name = "output")]
    public BertOutput Output { get; }

    public override Tensor forward(Tensor hidden, Tensor? mask)
    {
        using var scope = NewDisposeScope();
        var attended = Attention.call(hidden, mask);
        return Output.call(Intermediate.call(attended), attended).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// As <see cref="forward"/> with <see cref="GradientCheckpointingGranularity.Selective"/> checkpointing: intermediate
    /// (dense and GELU) is recomputed in backward from the attention output, which is kept anyway (the residual of the output
    /// block's LayerNorm), instead of keeping the dense output [.., intermediate] for GELU's backward.
    /// </summary>
    internal Tensor ForwardRecomputingIntermediate(Tensor hidden, Tensor? mask)
    {
        using var scope = NewDisposeScope();
        var attended = Attention.call(hidden, mask);
        var intermediate = GradientCheckpoint.Apply((x, _) => Intermediate.call(x), attended);
        return Output.call(intermediate, attended).MoveToOuterDisposeScope();
    }
}

/// <summary><c>encoder</c>: the stack of <see cref="BertLayer"/>s, registered as <c>layer.{i}</c>.</summary>
public sealed partial class BertEncoder : nn.Module<Tensor, Tensor?, Tensor>
{
    public BertEncoder(BertConfig config) : base(nameof(BertEncoder))
    {
        Layer = nn.ModuleList(Enumerable.Range(0, config.NumHiddenLayers).Select(_ => new BertLayer(config)).ToArray());
        RegisterComponents();
    }

    [field: ComponentName(Name = "layer")]
    public ModuleList<BertLayer> Layer { get; }

    /// <summary>
    /// Recompute each layer's forward during backward instead of keeping its activations (transformers'
    /// <c>BertEncoder.gradient_checkpointing</c>); applies in training mode with autograd on. Default false.
    /// </summary>
    public bool GradientCheckpointing { get; set; }

    /// <summary>With <see cref="GradientCheckpointing"/>: checkpoint only the first this many layers (as <c>LlamaModel.GradientCheckpointingLayers</c>); null (default) for all.</summary>
    public int? GradientCheckpointingLayers { get; set; }

    /// <summary>With <see cref="GradientCheckpointing"/>: what a checkpointed layer recomputes (selective: intermediate.dense and its GELU). Default <see cref="GradientCheckpointingGranularity.Full"/>.</summary>
    public GradientCheckpointingGranularity GradientCheckpointingGranularity { get; set; }

    public override Tensor forward(Tensor hidden, Tensor? mask)
    {
        using var scope = NewDisposeScope();
        bool checkpointing = GradientCheckpointing && training && is_grad_enabled();
        int checkpointed = checkpointing ? Math.Min(GradientCheckpointingLayers ?? Layer.Count, Layer.Count) : 0;
        for (int i = 0; i < Layer.Count; i++)
        {
            var layer = Layer[i];
            hidden = i >= checkpointed ? layer.call(hidden, mask)
                : GradientCheckpointingGranularity == GradientCheckpointingGranularity.Selective ? layer.ForwardRecomputingIntermediate(hidden, mask)
                : GradientCheckpoint.Apply((x, c) => layer.call(x, c[0]), hidden, mask);
        }
        return hidden.MoveToOuterDisposeScope();
    }
}

/// <summary><c>pooler</c>: tanh(dense(h[:, 0])) — the first token's state, projected.</summary>
public sealed partial class BertPooler : nn.Module<Tensor, Tensor>, IChildReplaceable
{
    public BertPooler(BertConfig config) : base(nameof(BertPooler))
    {
        Dense = LayerFactory.Linear(config.HiddenSize, config.HiddenSize, bias: true);
        RegisterComponents();
    }

    [field: ComponentName(Name = "dense")]
    public nn.Module<Tensor, Tensor> Dense { get; private set; }

    public override Tensor forward(Tensor hidden)
    {
        using var scope = NewDisposeScope();
        var first = hidden.select(1, 0);
        return Dense.call(first).tanh().MoveToOuterDisposeScope();
    }

    void IChildReplaceable.ReplaceChild(string name, nn.Module<Tensor, Tensor> replacement)
    {
        if (name != "dense")
        {
            throw ModelThrow.Misuse(nameof(name), $"{nameof(BertPooler)} has no replaceable child '{name}'");
        }
        Dense = replacement;
        _internal_submodules[name] = replacement;
    }
}
