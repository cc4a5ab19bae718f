using OnnxLora.Core.Peft;
using OnnxLora.Models.Internals;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace OnnxLora.Models.Lora;

/// <summary>
/// A Linear with a LoRA adapter: y = x·Wᵀ + b + s·(dropout(x)·Aᵀ)·Bᵀ with A [r, in], B [out, r] and
/// s = α/r (α/√r with rsLoRA). With DoRA a magnitude m [out] rescales each output:
/// y = m/‖W + s·B·A‖_row ⊙ (x·(W + s·B·A)ᵀ) + b, the row norm detached from the gradient, as PEFT does.
/// Registered children and parameters follow PEFT's layout without the adapter name:
/// <c>base_layer.weight</c>/<c>base_layer.bias</c> (frozen), <c>lora_A.weight</c>, <c>lora_B.weight</c>,
/// <c>lora_magnitude_vector</c> (DoRA only).
/// </summary>
public sealed partial class LoraLinear : LoraLayer
{
    /// <summary>Wraps <paramref name="baseLayer"/>; A is initialised Kaiming-uniform (a=√5) or N(0, 1/r²) with <paramref name="initGaussian"/>, B zeros, so the output is unchanged at first. A is drawn from <paramref name="generator"/> (the global generator when null).</summary>
    public LoraLinear(Linear baseLayer, int rank, double alpha, double dropout = 0.0, bool useRsLora = false, bool useDora = false,
        bool initGaussian = false, Generator? generator = null) : base(nameof(LoraLinear))
    {
        ArgumentNullException.ThrowIfNull(baseLayer);
        LoraChecks.RankAlphaDropout(rank, alpha, dropout);
        BaseLayer = baseLayer;
        Rank = rank;
        Alpha = alpha;
        DropoutProbability = dropout;
        UseRsLora = useRsLora;
        UseDora = useDora;
        InFeatures = baseLayer.weight!.shape[1];
        OutFeatures = baseLayer.weight!.shape[0];
        LoraAModule = LayerFactory.Linear(InFeatures, rank, bias: false);
        LoraBModule = LayerFactory.Linear(rank, OutFeatures, bias: false);
        using (no_grad())
        {
            if (initGaussian)
            {
                LoraAModule.weight!.normal_(0, 1.0 / rank, generator);
            }
            else
            {
                double bound = 1.0 / Math.Sqrt(InFeatures);
                LoraAModule.weight!.uniform_(-bound, bound, generator);
            }
            LoraBModule.weight!.zero_();
        }
        if (useDora)
        {
            using var norm = WeightRowNorm();
            Magnitude = new Parameter(norm.clone());
        }
        RegisterComponents();
    }

    /// <summary><c>base_layer</c>: the wrapped Linear (W [out, in], optional bias), frozen by injection.</summary>
    [field: ComponentName(Name = "base_layer")]
    public Linear BaseLayer { get; }

    /// <summary><c>lora_A</c>: Linear in → r without bias.</summary>
    [field: ComponentName(Name = "lora_A")]
    internal Linear LoraAModule { get; }

    /// <summary><c>lora_B</c>: Linear r → out without bias.</summary>
    [field: ComponentName(Name = "lora_B")]
    internal Linear LoraBModule { get; }

    /// <summary><c>lora_magnitude_vector</c> m [out] (DoRA only; null otherwise).</summary>
    [field: ComponentName(Name = "lora_magnitude_vector")]
    public Parameter? Magnitude { get; }

    /// <summary>The base weight W [out, in].</summary>
    public override Parameter Weight => BaseLayer.weight!;

    /// <summary>The base bias [out], or null.</summary>
    public Parameter? Bias => BaseLayer.bias;

    /// <summary>A [r, in].</summary>
    public Parameter LoraA => LoraAModule.weight!;

    /// <summary>B [out, r].</summary>
    public Parameter LoraB => LoraBModule.weight!;

    public long InFeatures { get; }

    public long OutFeatures { get; }

    public bool UseDora { get; }

    /// <summary>Dropout applied to the adapter's input in training mode (PEFT's lora_dropout).</summary>
    public double DropoutProbability { get; }

    /// <inheritdoc/>
    public override ModuleUpdate Update() => ModuleUpdate.Lora(nameof(LoraLinear), LoraLayerMerge.Singles(LoraA), LoraLayerMerge.Singles(LoraB),
        Magnitude is null ? null : LoraLayerMerge.Singles(Magnitude), Rank, Scaling, checked((int)InFeatures), checked((int)OutFeatures));

    public override Tensor forward(Tensor input)
    {
        using var scope = NewDisposeScope();
        var result = BaseLayer.call(input);
        if (!AdapterEnabled)
        {
            return result.MoveToOuterDisposeScope();
        }
        bool dropping = DropoutProbability > 0 && training;
        var x = dropping ? nn.functional.dropout(input, DropoutProbability, training: true) : input;
        var lora = LoraBModule.call(LoraAModule.call(x));
        if (!UseDora)
        {
            return (result + lora * Scaling).MoveToOuterDisposeScope();
        }
        // PEFT's DoRA: the base part is recomputed from the dropped-out input when dropout is active,
        // otherwise it is the base output without bias; the row norm is a constant for autograd.
        var baseResult = dropping ? nn.functional.linear(x, Weight) : (Bias is null ? result : result - Bias);
        var norm = WeightRowNorm();
        var magNormScale = Magnitude! / norm;
        var dora = (magNormScale - 1) * baseResult + magNormScale * lora * Scaling;
        return (result + dora).MoveToOuterDisposeScope();
    }

    /// <summary>‖W + s·B·A‖ per output row [out], without gradient.</summary>
    internal Tensor WeightRowNorm() => RowNorm(Weight, LoraA, LoraB, Scaling);

    /// <summary>
    /// ‖<paramref name="weight"/> + s·B·A‖ per output row computed in fp64 and rounded to fp32 once, without gradient: the
    /// constant an export writes. fp64 so that its bits do not depend on which fp32 GEMM kernels the BLAS picks on this CPU
    /// (MKL's AVX2 / AVX-512 / generic paths round differently), only on the weights.
    /// </summary>
    internal static Tensor RowNormFp64(Tensor weight, Tensor loraA, Tensor loraB, double scaling)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var combined = weight.to_type(ScalarType.Float64) + (loraB.to_type(ScalarType.Float64).matmul(loraA.to_type(ScalarType.Float64)) * scaling);
        return combined.pow(2).sum(1).sqrt().to_type(ScalarType.Float32).detach().MoveToOuterDisposeScope();
    }

    /// <summary>‖<paramref name="weight"/> + s·B·A‖ per output row, without gradient.</summary>
    private static Tensor RowNorm(Tensor weight, Tensor loraA, Tensor loraB, double scaling)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var combined = weight + loraB.matmul(loraA) * scaling;
        return combined.pow(2).sum(1).sqrt().detach().MoveToOuterDisposeScope();
    }
}
