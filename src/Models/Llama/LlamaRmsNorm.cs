using OnnxLora.Models.Internals;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace OnnxLora.Models.Llama;

/// <summary>
/// Root-mean-square norm: <c>weight ⊙ x / sqrt(mean(x²) + eps)</c> over the last dimension,
/// computed in fp32 (Hugging Face <c>LlamaRMSNorm</c>). Parameter: <c>weight</c> [hidden].
/// </summary>
public sealed partial class LlamaRmsNorm : nn.Module<Tensor, Tensor>
{
    public LlamaRmsNorm(long hiddenSize, double eps) : base(nameof(LlamaRmsNorm))
    {
        Eps = eps;
        Weight = LayerFactory.Ones(hiddenSize);
        RegisterComponents();
    }

    /// <summary>The learned scale, registered as <c>weight</c>.</summary>
    [field: ComponentName(Name = "weight")]
    public Parameter Weight { get; private set; }

    public double Eps { get; }

    public override Tensor forward(Tensor input)
    {
        using var scope = NewDisposeScope();
        var x = input.to(ScalarType.Float32);
        var variance = x.pow(2).mean([-1], keepdim: true);
        var normed = x * rsqrt(variance + Eps);
        return (Weight * normed.to(input.dtype)).MoveToOuterDisposeScope();
    }
}
