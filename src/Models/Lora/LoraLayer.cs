using OnnxLora.Core;
using OnnxLora.Core.Peft;
using OnnxLora.Models.Internals;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace OnnxLora.Models.Lora;

/// <summary>
/// What the LoRA layers (<see cref="LoraLinear"/>, <see cref="LoraEmbedding"/>) share: their update as
/// Core's <see cref="ModuleUpdate"/> (the one ΔW composition), and folding it into the base weight and
/// back, as PEFT's <c>merge</c> / <c>unmerge</c> call <c>get_delta_weight</c>.
/// </summary>
public abstract class LoraLayer : nn.Module<Tensor, Tensor>
{
    /// <summary>The base weight before a DoRA merge (not recoverable by subtraction); owned here until unmerge.</summary>
    private Tensor? _savedWeight;

    private protected LoraLayer(string name) : base(name)
    {
    }

    /// <summary>The frozen base weight, in its stored layout ([out, in] for Linear, [num, dim] for Embedding).</summary>
    public abstract Parameter Weight { get; }

    public int Rank { get; private protected init; }

    public double Alpha { get; private protected init; }

    /// <summary>Scale by α/√r instead of α/r (rsLoRA).</summary>
    public bool UseRsLora { get; private protected init; }

    /// <summary>s = α/r, or α/√r with rsLoRA (<see cref="PeftAdapterConfig.Scaling(double, int, bool)"/>).</summary>
    public double Scaling => PeftAdapterConfig.Scaling(Alpha, Rank, UseRsLora);

    /// <summary>
    /// When false the layer computes only the base layer. <see cref="Merge"/> turns it off after writing
    /// W' into the base weight, so the adapter is not applied twice.
    /// </summary>
    public bool AdapterEnabled { get; set; } = true;

    /// <summary>True after <see cref="Merge"/>: the base weight holds W' and the adapter branch is off.</summary>
    public bool Merged { get; private set; }

    /// <summary>The update, with fp32 copies of the factors.</summary>
    public abstract ModuleUpdate Update();

    /// <summary>W' = the merged weight (fp32, base layout) as a new tensor; the layer is unchanged. The caller disposes it.</summary>
    public Tensor MergedWeight()
    {
        var w = LoraLayerMerge.Singles(Weight);
        Update().MergeInto(w);
        return tensor(w, Weight.shape, ScalarType.Float32);
    }

    /// <summary>Writes W' into the base weight and disables the adapter branch (no-op when already merged).</summary>
    /// <exception cref="InvalidDataException">Safe mode and W' holds NaN/Inf (named); the layer is unchanged.</exception>
    public void Merge(bool safeMode = true)
    {
        if (Merged)
        {
            return;
        }
        var update = Update();
        var w = LoraLayerMerge.Singles(Weight);
        update.MergeInto(w);
        long bad = safeMode ? FloatCodec.FirstNonFinite(w) : -1;
        if (bad >= 0)
        {
            throw ModelThrow.Invalid(GetType().Name, "merged weight", $"{w[bad]} at element {bad}", "finite values (safe mode); check the adapter for NaN/Inf");
        }
        var previous = LoraLayerMerge.Replace(Weight, w);
        if (update.IsDora)
        {
            _savedWeight = previous;
        }
        else
        {
            previous.Dispose();
        }
        Merged = true;
        AdapterEnabled = false;
    }

    /// <summary>Restores W (W' − ΔW, or the weight saved at merge time for DoRA) and re-enables the adapter branch.</summary>
    public void Unmerge()
    {
        if (!Merged)
        {
            return;
        }
        if (_savedWeight is not null)
        {
            LoraLayerMerge.Replace(Weight, _savedWeight).Dispose();
            _savedWeight.Dispose();
            _savedWeight = null;
        }
        else
        {
            var w = LoraLayerMerge.Singles(Weight);
            Update().UnmergeFrom(w);
            LoraLayerMerge.Replace(Weight, w).Dispose();
        }
        Merged = false;
        AdapterEnabled = true;
    }

    /// <summary>
    /// Copies <paramref name="weight"/> (the base weight's shape) into the base weight and returns a copy of
    /// the previous weight, which the caller owns and can pass back here to restore it.
    /// </summary>
    /// <exception cref="ArgumentException">The shape differs.</exception>
    public Tensor ReplaceBaseWeight(Tensor weight) => LoraLayerMerge.Replace(Weight, weight);

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _savedWeight?.Dispose();
            _savedWeight = null;
        }
        base.Dispose(disposing);
    }
}

/// <summary>Tensor ↔ fp32 array copies and the in-place weight replacement of <see cref="LoraLayer"/>.</summary>
internal static class LoraLayerMerge
{
    public static float[] Singles(Tensor t)
    {
        using var scope = NewDisposeScope();
        return t.detach().to(ScalarType.Float32, CPU).contiguous().data<float>().ToArray();
    }

    public static Tensor Replace(Tensor weight, float[] values)
    {
        using var replacement = tensor(values, weight.shape, ScalarType.Float32);
        return Replace(weight, replacement);
    }

    /// <summary>Copies <paramref name="replacement"/> into the frozen base weight and returns the previous values (the caller owns them).</summary>
    public static Tensor Replace(Tensor weight, Tensor replacement)
    {
        ArgumentNullException.ThrowIfNull(replacement);
        if (!replacement.shape.SequenceEqual(weight.shape))
        {
            throw ModelThrow.Misuse(nameof(replacement), "replacement base weight", ModelThrow.Shape(replacement.shape), ModelThrow.Shape(weight.shape));
        }
        using var noGrad = no_grad();
        using var view = weight.detach();
        var previous = view.clone();
        weight.copy_(replacement);
        return previous;
    }
}
