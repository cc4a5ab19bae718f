using OnnxLora.Core;
using OnnxLora.Core.Peft;
using OnnxLora.Models.Internals;
using static TorchSharp.torch;

namespace OnnxLora.Models.Lora;

/// <summary>
/// What the LoRA layers (<see cref="LoraLinear"/>, <see cref="LoraEmbedding"/>) share: their update as
/// Core's <see cref="ModuleUpdate"/> (the one ΔW composition), and folding it into the base weight and
/// back, as PEFT's <c>merge</c> / <c>unmerge</c> call <c>get_delta_weight</c>.
/// </summary>
public interface ILoraLayer
{
    /// <summary>The frozen base weight, in its stored layout ([out, in] for Linear, [num, dim] for Embedding).</summary>
    TorchSharp.Modules.Parameter Weight { get; }

    int Rank { get; }

    double Alpha { get; }

    /// <summary>s = α/r, or α/√r with rsLoRA (<see cref="PeftAdapterConfig.Scaling(double, int, bool)"/>).</summary>
    double Scaling { get; }

    /// <summary>True after <see cref="Merge"/>: the base weight holds W' and the adapter branch is off.</summary>
    bool Merged { get; }

    /// <summary>The update, with fp32 copies of the factors.</summary>
    ModuleUpdate Update();

    /// <summary>W' = the merged weight (fp32, base layout) as a new tensor; the layer is unchanged. The caller disposes it.</summary>
    Tensor MergedWeight();

    /// <summary>Writes W' into the base weight and disables the adapter branch (no-op when already merged).</summary>
    /// <exception cref="InvalidDataException">Safe mode and W' holds NaN/Inf (named); the layer is unchanged.</exception>
    void Merge(bool safeMode = true);

    /// <summary>Restores W (recomputed as W' − ΔW, or the weight saved at merge time for DoRA) and re-enables the adapter branch.</summary>
    void Unmerge();
}

/// <summary>The merge mechanics of <see cref="ILoraLayer"/>, once for both layers.</summary>
internal static class LoraLayerMerge
{
    public static float[] Singles(Tensor t)
    {
        using var scope = NewDisposeScope();
        return t.detach().to(ScalarType.Float32, CPU).contiguous().data<float>().ToArray();
    }

    /// <summary>W' in fp32 as a new CPU tensor of the weight's shape.</summary>
    public static Tensor MergedWeight(Tensor weight, ModuleUpdate update)
    {
        var w = Singles(weight);
        update.MergeInto(w);
        return tensor(w, weight.shape, ScalarType.Float32);
    }

    /// <summary>
    /// Writes W' into <paramref name="weight"/> (in its dtype and device). Returns the previous weight when
    /// the merge cannot be undone by subtraction (DoRA), which the caller keeps until unmerge; else null.
    /// </summary>
    public static Tensor? Merge(string layer, Tensor weight, ModuleUpdate update, bool safeMode)
    {
        var w = Singles(weight);
        update.MergeInto(w);
        long bad = safeMode ? FloatCodec.FirstNonFinite(w) : -1;
        if (bad >= 0)
        {
            throw ModelThrow.Invalid(layer, "merged weight", $"{w[bad]} at element {bad}", "finite values (safe mode); check the adapter for NaN/Inf");
        }
        var previous = Replace(weight, w);
        if (update.IsDora)
        {
            return previous;
        }
        previous.Dispose();
        return null;
    }

    /// <summary>Restores the weight merged by <see cref="Merge"/>: <paramref name="saved"/> when given (then disposed), else W' − ΔW.</summary>
    public static void Unmerge(Tensor weight, ModuleUpdate update, Tensor? saved)
    {
        if (saved is not null)
        {
            Replace(weight, saved).Dispose();
            saved.Dispose();
            return;
        }
        var w = Singles(weight);
        update.UnmergeFrom(w);
        Replace(weight, w).Dispose();
    }

    private static Tensor Replace(Tensor weight, float[] values)
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
            throw ModelThrow.Argument(nameof(replacement), "replacement base weight", ModelThrow.Shape(replacement.shape), ModelThrow.Shape(weight.shape));
        }
        using var noGrad = no_grad();
        using var view = weight.detach();
        var previous = view.clone();
        weight.copy_(replacement);
        return previous;
    }
}
