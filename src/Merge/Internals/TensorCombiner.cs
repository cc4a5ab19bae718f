using OnnxLora.Core.Peft;

namespace OnnxLora.Merge.Internals;

/// <summary>
/// Merges every module contribution to one weight according to the plan's applied combination.
/// </summary>
/// <remarks>
/// <see cref="Combination.DeltaSum"/>: each adapter's update in the order given, against the weight
/// the adapters before it left, as PEFT's <c>merge</c> does with several active adapters (only DoRA,
/// whose norm is taken on that weight, depends on the order). Every PEFT combination: the combined
/// adapter PEFT's <c>add_weighted_adapter</c> builds for this module (<see cref="FactorCombiner"/>),
/// then merged like any LoRA update with scaling 1.
/// </remarks>
internal static class TensorCombiner
{
    /// <summary>Merges <paramref name="entries"/> into <paramref name="weight"/> (stored layout, or its transpose when <paramref name="transposed"/>).</summary>
    public static void Apply(MergePlan plan, IReadOnlyList<MergePlanEntry> entries, Span<float> weight, bool transposed)
    {
        if (plan.AppliedCombination == Combination.DeltaSum)
        {
            foreach (var e in entries)
            {
                Adapter(plan, e).ReadUpdate(e.Module).MergeInto(weight, e.Weight, transposed);
            }
            return;
        }
        Combined(plan, entries).MergeInto(weight, 1.0, transposed);
    }

    /// <summary><see cref="Apply"/> as a <see cref="RowUpdate"/> (same bits), or null when some update is not formed row by row.</summary>
    public static RowUpdate? RowUpdate(MergePlan plan, IReadOnlyList<MergePlanEntry> entries, bool transposed) =>
        plan.AppliedCombination == Combination.DeltaSum
            ? Core.Peft.RowUpdate.Sequence(entries.Select(e => Adapter(plan, e).ReadUpdate(e.Module).RowUpdate(e.Weight, transposed)))
            : Combined(plan, entries).RowUpdate(1.0, transposed);

    /// <summary>The combined adapter PEFT's <c>add_weighted_adapter</c> builds for this module, as a LoRA update with scaling 1.</summary>
    private static ModuleUpdate Combined(MergePlan plan, IReadOnlyList<MergePlanEntry> entries)
    {
        var first = entries[0].Module;
        var parts = entries.Select(e => new ModulePart(e.AdapterIndex, Adapter(plan, e), e.Module, e.Weight)).ToList();
        var (a, b, rank) = FactorCombiner.Combine(first.ModulePath, parts, plan.AppliedCombination, plan.Options, plan.NewRank);
        return first.Kind == AdapterModuleKind.LoraEmbedding
            ? ModuleUpdate.LoraEmbedding(first.ModulePath, a, b, rank, 1.0, first.InFeatures, first.OutFeatures)
            : ModuleUpdate.Lora(first.ModulePath, a, b, null, rank, 1.0, first.InFeatures, first.OutFeatures, first.WeightIsTransposed);
    }

    private static PeftAdapter Adapter(MergePlan plan, MergePlanEntry e) => plan.Adapters[e.AdapterIndex].Adapter;
}
