using OnnxLora.Core;
namespace OnnxLora.Merge;

/// <summary>
/// How several adapters are combined. Every name but <see cref="DeltaSum"/> is one of PEFT's
/// <c>add_weighted_adapter(combination_type=...)</c> (peft/tuners/lora/model.py) with PEFT's semantics;
/// <see cref="CombinationNames"/> gives the spellings. Into a model, a PEFT combination first builds
/// the combined adapter and then merges it, as PEFT does; <see cref="DeltaSum"/> merges each adapter's
/// update directly.
/// </summary>
public enum Combination
{
    /// <summary>
    /// "delta_sum" (not a PEFT name): W + Σ wᵢ·ΔWᵢ, exact, every adapter kind; adapters are merged one
    /// after another in the order given, as PEFT's <c>merge</c> does with several adapters (this matters
    /// only for DoRA). Written as a new adapter it is <see cref="Cat"/>, the exact low-rank form.
    /// </summary>
    DeltaSum,

    /// <summary>
    /// "linear": PEFT's factor-space weighted sum, A' = Σ sgn(wᵢsᵢ)·√|wᵢsᵢ|·Aᵢ, B' = Σ √|wᵢsᵢ|·Bᵢ (so B'A'
    /// has cross terms and is not Σ wᵢ·ΔWᵢ); LoRA inputs of one rank.
    /// </summary>
    Linear,

    /// <summary>"cat": A' stacks wᵢ·sᵢ·Aᵢ, B' stacks Bᵢ; exact, rank Σ rᵢ; LoRA inputs.</summary>
    Cat,

    /// <summary>"svd": Σ wᵢ·ΔWᵢ truncated to the new rank by SVD (B' = U·S, A' = Vᵀ).</summary>
    Svd,

    /// <summary>"ties": TIES on the A and on the B factors separately (magnitude prune, majority sign, disjoint mean), weights as in linear.</summary>
    Ties,

    /// <summary>"ties_svd": TIES on the ΔWᵢ, then SVD to the new rank.</summary>
    TiesSvd,

    /// <summary>"dare_linear": DARE (random drop, rescale by 1/density) on the A and B factors, weighted sum as in linear.</summary>
    DareLinear,

    /// <summary>"dare_ties": DARE then TIES sign election and disjoint mean, on the A and B factors.</summary>
    DareTies,

    /// <summary>"dare_linear_svd": DARE on the ΔWᵢ, weighted sum, then SVD.</summary>
    DareLinearSvd,

    /// <summary>"dare_ties_svd": DARE and TIES on the ΔWᵢ, then SVD.</summary>
    DareTiesSvd,

    /// <summary>"magnitude_prune": keep the largest density share of each A and B factor, weighted sum as in linear.</summary>
    MagnitudePrune,

    /// <summary>"magnitude_prune_svd": magnitude pruning of each ΔWᵢ, weighted sum, then SVD.</summary>
    MagnitudePruneSvd,
}

/// <summary>The spellings of <see cref="Combination"/> (PEFT's combination_type strings, plus "delta_sum").</summary>
public static class CombinationNames
{
    private static readonly (Combination Value, string Name)[] Names =
    [
        (Combination.DeltaSum, "delta_sum"),
        (Combination.Linear, "linear"),
        (Combination.Cat, "cat"),
        (Combination.Svd, "svd"),
        (Combination.Ties, "ties"),
        (Combination.TiesSvd, "ties_svd"),
        (Combination.DareLinear, "dare_linear"),
        (Combination.DareTies, "dare_ties"),
        (Combination.DareLinearSvd, "dare_linear_svd"),
        (Combination.DareTiesSvd, "dare_ties_svd"),
        (Combination.MagnitudePrune, "magnitude_prune"),
        (Combination.MagnitudePruneSvd, "magnitude_prune_svd"),
    ];

    /// <summary>Every spelling, in declaration order.</summary>
    public static IReadOnlyList<string> All { get; } = Names.Select(n => n.Name).ToArray();

    /// <summary>The spelling of a combination ("dare_ties_svd").</summary>
    public static string ToName(this Combination combination) =>
        Names.FirstOrDefault(n => n.Value == combination).Name ?? throw new ArgumentOutOfRangeException(nameof(combination), combination, null);

    /// <summary>Parses an exact (case-sensitive) spelling.</summary>
    public static bool TryParse(string? name, out Combination combination)
    {
        foreach (var (value, n) in Names)
        {
            if (string.Equals(n, name, StringComparison.Ordinal))
            {
                combination = value;
                return true;
            }
        }
        combination = default;
        return false;
    }

    /// <summary>The spelling of a sign method ("total", "frequency"), PEFT's majority_sign_method values.</summary>
    public static string ToName(this MajoritySignMethod method) => method == MajoritySignMethod.Frequency ? "frequency" : "total";

    /// <summary>Parses "total" or "frequency".</summary>
    public static bool TryParseMajoritySignMethod(string? name, out MajoritySignMethod method)
    {
        method = name == "frequency" ? MajoritySignMethod.Frequency : MajoritySignMethod.Total;
        return name is "total" or "frequency";
    }
}

/// <summary>How TIES elects the sign of each element (PEFT's majority_sign_method, merge_utils.calculate_majority_sign_mask).</summary>
public enum MajoritySignMethod
{
    /// <summary>The sign of the sum of the (pruned) values.</summary>
    Total,

    /// <summary>The sign held by most (pruned) values.</summary>
    Frequency,
}

/// <summary>
/// Options of a merge. Defaults: <see cref="Combination.DeltaSum"/> (exact), density 1 (no pruning), TIES
/// sign by total, seed 0, SVD rank = PEFT's default (the largest adapter rank), dtypes kept, safe mode
/// on, never overwrite.
/// </summary>
public sealed record MergeOptions
{
    /// <summary>How several adapters are combined (PEFT's combination_type, or <see cref="Combination.DeltaSum"/>).</summary>
    public Combination Combination { get; init; } = Combination.DeltaSum;

    /// <summary>PEFT's density: the fraction of values ties / dare_* / magnitude_prune (and their _svd forms) keep, in [0, 1]; 1 keeps all.</summary>
    public double Density { get; init; } = 1.0;

    /// <summary>PEFT's majority_sign_method for ties / dare_ties (and their _svd forms).</summary>
    public MajoritySignMethod MajoritySignMethod { get; init; } = MajoritySignMethod.Total;

    /// <summary>Seed of the DARE masks (each module, adapter and factor gets its own stream derived from it).</summary>
    public int Seed { get; init; }

    /// <summary>PEFT's svd_rank: the rank the *_svd combinations keep; null = the largest adapter rank (r, or the largest rank_pattern value).</summary>
    public int? SvdRank { get; init; }

    /// <summary>The dtype of written floating-point tensors (F32, F16 or BF16); null keeps each tensor's dtype.</summary>
    public DType? OutputDType { get; init; }

    /// <summary>Refuse (error naming the tensor) to write a merged value that is NaN or ±Inf, including overflow of the output dtype.</summary>
    public bool SafeMode { get; init; } = true;

    /// <summary>Replace an existing output.</summary>
    public bool Overwrite { get; init; }

    /// <summary>Checkpoint target: copy the folder's other top-level files (config.json, tokenizer files, ...) into the output.</summary>
    public bool CopyOtherFiles { get; init; } = true;

    /// <summary>The defaults.</summary>
    public static MergeOptions Default { get; } = new();

    internal void Validate()
    {
        if (!double.IsFinite(Density) || Density < 0 || Density > 1)
        {
            throw Internals.MergeThrow.Option(nameof(Density), $"{Density}", "a fraction in [0, 1]");
        }
        if (SvdRank is <= 0)
        {
            throw Internals.MergeThrow.Option(nameof(SvdRank), $"{SvdRank}", "a positive rank");
        }
    }
}

/// <summary>An adapter and its weight wᵢ in a merge.</summary>
public sealed record WeightedAdapter(Core.Peft.PeftAdapter Adapter, double Weight = 1.0);
