using OnnxLora.Core.HuggingFace;
using OnnxLora.Models.Internals;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace OnnxLora.Models.Llama;

/// <summary>
/// One pre-norm decoder block: h += self_attn(input_layernorm(h)); h += mlp(post_attention_layernorm(h)).
/// </summary>
public sealed partial class LlamaDecoderLayer : nn.Module<Tensor, Tensor, Tensor, Tensor?, Tensor>
{
    public LlamaDecoderLayer(LlamaConfig config) : base(nameof(LlamaDecoderLayer))
    {
        SelfAttn = new LlamaAttention(config);
        Mlp = new LlamaMlp(config);
        InputLayernorm = new LlamaRmsNorm(config.HiddenSize, config.RmsNormEps);
        PostAttentionLayernorm = new LlamaRmsNorm(config.HiddenSize, config.RmsNormEps);
        RegisterComponents();
    }

    [field: ComponentName(Name = "self_attn")]
    public LlamaAttention SelfAttn { get; }

    [field: ComponentName(Name = "mlp")]
    public LlamaMlp Mlp { get; }

    [field: ComponentName(Name = "input_layernorm")]
    public LlamaRmsNorm InputLayernorm { get; }

    [field: ComponentName(Name = "post_attention_layernorm")]
    public LlamaRmsNorm PostAttentionLayernorm { get; }

    /// <inheritdoc cref="LlamaAttention.forward(Tensor, Tensor, Tensor, Tensor?)"/>
    public override Tensor forward(Tensor hidden, Tensor cos, Tensor sin, Tensor? mask) => forward(hidden, cos, sin, mask, null, 0);

    /// <inheritdoc cref="LlamaAttention.forward(Tensor, Tensor, Tensor, Tensor?, KeyValueCache?, int)"/>
    public Tensor forward(Tensor hidden, Tensor cos, Tensor sin, Tensor? mask, KeyValueCache? cache, int layerIndex)
    {
        using var scope = NewDisposeScope();
        var h = hidden + SelfAttn.forward(InputLayernorm.call(hidden), cos, sin, mask, cache, layerIndex);
        var output = h + Mlp.call(PostAttentionLayernorm.call(h));
        return output.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// As <see cref="forward(Tensor, Tensor, Tensor, Tensor?)"/> with <see cref="GradientCheckpointingGranularity.Selective"/>
    /// checkpointing: gate_proj, up_proj and silu·up are recomputed in backward from the normed input, which is kept instead
    /// of the two [.., intermediate] projections and the silu output; down_proj runs outside (a frozen down_proj keeps nothing
    /// for backward). The same operations in the same order as the plain forward. The norm stays outside the recomputation:
    /// inside it, the gradient reaching h would be summed in another order than in the plain backward (h feeds the norm twice
    /// and the residual once), a few 1e-6 apart after some steps, for a saving of one [.., hidden] tensor per layer.
    /// </summary>
    internal Tensor ForwardRecomputingMlp(Tensor hidden, Tensor cos, Tensor sin, Tensor? mask)
    {
        using var scope = NewDisposeScope();
        var h = hidden + SelfAttn.forward(InputLayernorm.call(hidden), cos, sin, mask, null, 0);
        var activation = GradientCheckpoint.Apply((x, _) => Mlp.Activation(x), PostAttentionLayernorm.call(h));
        var output = h + Mlp.DownProj.call(activation);
        return output.MoveToOuterDisposeScope();
    }
}
