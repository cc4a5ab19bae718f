using OnnxLora.Models.Internals;

namespace OnnxLora.Models.Lora;

/// <summary>Argument checks shared by the LoRA layers.</summary>
internal static class LoraChecks
{
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
