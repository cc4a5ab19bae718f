using OnnxLora.Training.Internals;
using static TorchSharp.torch;

namespace OnnxLora.Training.Lora;

/// <summary>The LoRA scale factor.</summary>
public static class LoraScaling
{
    /// <summary>α/r, or α/√r for rsLoRA.</summary>
    public static double Of(double alpha, int rank, bool useRsLora) => useRsLora ? alpha / Math.Sqrt(rank) : alpha / rank;
}

/// <summary>Argument checks and weight handling shared by the LoRA layers.</summary>
internal static class LoraChecks
{
    /// <summary>Copies <paramref name="replacement"/> into the frozen base weight and returns the previous values (the caller owns them).</summary>
    public static Tensor ReplaceWeight(Tensor weight, Tensor replacement)
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

    public static void RankAlphaDropout(int rank, double alpha, double dropout)
    {
        if (rank <= 0)
        {
            throw ModelThrow.Argument(nameof(rank), "LoRA rank", rank.ToString(System.Globalization.CultureInfo.InvariantCulture), "a positive integer");
        }
        if (!double.IsFinite(alpha))
        {
            throw ModelThrow.Argument(nameof(alpha), "LoRA alpha", alpha.ToString("R", System.Globalization.CultureInfo.InvariantCulture), "a finite number");
        }
        if (!(dropout >= 0 && dropout < 1))
        {
            throw ModelThrow.Argument(nameof(dropout), "LoRA dropout", dropout.ToString("R", System.Globalization.CultureInfo.InvariantCulture), "a probability in [0, 1)");
        }
    }
}
