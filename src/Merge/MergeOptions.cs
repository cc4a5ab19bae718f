using OnnxLora.Core;
namespace OnnxLora.Merge;

/// <summary>How several adapters' updates of one weight are combined (PEFT's combination types).</summary>
public enum Combination
{
    /// <summary>Σ wᵢ·ΔWᵢ, exact. As a new adapter it is written as <see cref="Cat"/> (the exact low-rank form).</summary>
    Linear,

    /// <summary>Exact: the new adapter concatenates the scaled factors (rank Σ rᵢ); into weights it equals <see cref="Linear"/>.</summary>
    Cat,

    /// <summary>Σ wᵢ·ΔWᵢ truncated to a new rank by SVD.</summary>
    Svd,

    /// <summary>TIES: magnitude-prune each ΔWᵢ to the density, elect the majority sign, average the agreeing weighted values.</summary>
    Ties,

    /// <summary>DARE: keep each element with probability density (seeded), rescale by 1/density, then Σ wᵢ·ΔWᵢ.</summary>
    DareLinear,

    /// <summary>DARE pruning followed by TIES sign election and disjoint mean.</summary>
    DareTies,

    /// <summary>Magnitude-prune each ΔWᵢ to the density, then Σ wᵢ·ΔWᵢ.</summary>
    MagnitudePrune,
}

/// <summary>How TIES elects the sign of each element.</summary>
public enum MajoritySignMethod
{
    /// <summary>The sign of the sum of the (pruned) values.</summary>
    Total,

    /// <summary>The sign held by most (pruned) values.</summary>
    Frequency,
}

/// <summary>
/// Options of a merge. Defaults: <see cref="Combination.Linear"/>, density 1 (no pruning), TIES sign by
/// total, seed 0, SVD rank = the largest input rank, dtypes kept, safe mode on, never overwrite.
/// </summary>
public sealed record MergeOptions
{
    /// <summary>How several adapters are combined.</summary>
    public Combination Combination { get; init; } = Combination.Linear;

    /// <summary>Fraction of values kept by ties / dare_* / magnitude_prune, in [0, 1]; 1 keeps all.</summary>
    public double Density { get; init; } = 1.0;

    /// <summary>Sign election for ties / dare_ties.</summary>
    public MajoritySignMethod MajoritySign { get; init; } = MajoritySignMethod.Total;

    /// <summary>Seed of the DARE masks (each tensor and adapter gets its own stream derived from it).</summary>
    public int Seed { get; init; }

    /// <summary>Rank kept by <see cref="Combination.Svd"/> and by combinations written as a new adapter; null = the largest input rank.</summary>
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
