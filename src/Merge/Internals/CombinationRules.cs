using System.Globalization;
using OnnxLora.Core.Peft;

namespace OnnxLora.Merge.Internals;

/// <summary>The combination a merge applies, decided once for all its tensors.</summary>
/// <param name="Applied">The combination carried out (after PEFT's single-adapter fallback).</param>
/// <param name="NewRank">The rank the *_svd combinations keep (PEFT's new_rank).</param>
/// <param name="Warnings">What the user should know (fallback, density 1, ...).</param>
internal sealed record CombinationChoice(Combination Applied, int NewRank, IReadOnlyList<string> Warnings);

/// <summary>
/// Which adapters a combination accepts and what it becomes, as PEFT's
/// <c>LoraModel._check_add_weighted_adapter</c> (peft/tuners/lora/model.py) decides it, plus this
/// project's refusals where PEFT would silently produce something else.
/// </summary>
internal static class CombinationRules
{
    /// <summary>Factor-space combinations: PEFT's <c>_generalized_task_arithmetic_weighted_adapter</c>.</summary>
    public static bool IsFactorSpace(this Combination c) =>
        c is Combination.Linear or Combination.Ties or Combination.DareLinear or Combination.DareTies or Combination.MagnitudePrune;

    /// <summary>ΔW-space combinations truncated by SVD: PEFT's <c>_svd_generalized_task_arithmetic_weighted_adapter</c>.</summary>
    public static bool IsSvd(this Combination c) =>
        c is Combination.Svd or Combination.TiesSvd or Combination.DareLinearSvd or Combination.DareTiesSvd or Combination.MagnitudePruneSvd;

    /// <summary>Combinations that read <see cref="MergeOptions.Density"/>.</summary>
    public static bool Prunes(this Combination c) => c.Method() is not TaskMethod.TaskArithmetic;

    /// <summary>Combinations that read <see cref="MergeOptions.MajoritySignMethod"/>.</summary>
    public static bool ElectsSign(this Combination c) => c.Method() is TaskMethod.Ties or TaskMethod.DareTies;

    /// <summary>The merge_utils function a combination uses on its task tensors (factors or ΔWᵢ).</summary>
    public static TaskMethod Method(this Combination c) => c switch
    {
        Combination.Ties or Combination.TiesSvd => TaskMethod.Ties,
        Combination.DareLinear or Combination.DareLinearSvd => TaskMethod.DareLinear,
        Combination.DareTies or Combination.DareTiesSvd => TaskMethod.DareTies,
        Combination.MagnitudePrune or Combination.MagnitudePruneSvd => TaskMethod.MagnitudePrune,
        _ => TaskMethod.TaskArithmetic,
    };

    /// <summary>
    /// PEFT's rank of an adapter for add_weighted_adapter: r, or the largest of r and the rank_pattern
    /// values (the size it allocates for the combined adapter).
    /// </summary>
    public static int PeftRank(PeftAdapter adapter) =>
        adapter.Config.RankPattern.Count == 0 ? adapter.Config.R : Math.Max(adapter.Config.R, adapter.Config.RankPattern.Values.Max());

    /// <summary>
    /// Decides the applied combination and checks the adapters fit it.
    /// </summary>
    /// <param name="adapters">The adapters with weights.</param>
    /// <param name="options">The requested combination and its parameters.</param>
    /// <param name="newAdapter">True when the result is a new adapter (no base weight), false when merging into a model.</param>
    /// <exception cref="InvalidDataException">An adapter the combination cannot take; the message names it.</exception>
    public static CombinationChoice Resolve(IReadOnlyList<WeightedAdapter> adapters, MergeOptions options, bool newAdapter)
    {
        var warnings = new List<string>();
        var requested = options.Combination;
        bool allLora = adapters.All(a => a.Adapter.Config.PeftType == PeftType.Lora);
        var applied = requested;
        if (adapters.Count == 1 && requested != Combination.DeltaSum)
        {
            // PEFT: "if there is only one adapter, we can only use linear merging". LoHa/LoKr have no
            // add_weighted_adapter in PEFT; for them the ΔW-space names keep the SVD step, without pruning.
            applied = allLora ? Combination.Linear : requested.IsSvd() ? Combination.Svd : requested;
            if (applied != requested)
            {
                warnings.Add($"one adapter: combination {requested.ToName()} becomes {applied.ToName()}, as PEFT's add_weighted_adapter does with a single adapter.");
            }
        }
        if (newAdapter && applied == Combination.DeltaSum)
        {
            applied = Combination.Cat;
        }
        if (applied.Prunes() && options.Density >= 1)
        {
            warnings.Add($"combination {applied.ToName()} with density {options.Density.ToString(CultureInfo.InvariantCulture)} prunes nothing (PEFT warns the same); pass a density below 1.");
        }

        foreach (var wa in adapters)
        {
            var a = wa.Adapter;
            if (a.Modules.FirstOrDefault(m => m.UseDora) is { } dora)
            {
                if (newAdapter)
                {
                    throw MergeThrow.Invalid(a.Directory, $"module '{dora.ModulePath}' is DoRA; its update depends on the base weight and PEFT's add_weighted_adapter does not carry the magnitude vector, so it cannot be combined into a new adapter (merge it into the weights with delta_sum instead).");
                }
                if (applied != Combination.DeltaSum)
                {
                    throw MergeThrow.Invalid(a.Directory, $"module '{dora.ModulePath}' is DoRA; combination {applied.ToName()} first builds a combined LoRA adapter (as PEFT's add_weighted_adapter), which loses the magnitude vector. Use delta_sum, which merges adapters one after another in the order given, as PEFT's merge does.");
                }
                if (wa.Weight != 1.0)
                {
                    throw MergeThrow.Invalid(a.Directory, $"DoRA adapter weight: found {wa.Weight.ToString(CultureInfo.InvariantCulture)}, expected 1: a DoRA merge replaces W by m ⊙ (W + ΔW)/‖W + ΔW‖, which has no weighted form in PEFT.");
                }
            }
            if (a.Modules.FirstOrDefault(m => m.HasLoraBias) is { } biased)
            {
                if (newAdapter || applied != Combination.DeltaSum)
                {
                    throw MergeThrow.Invalid(a.Directory, $"module '{biased.ModulePath}' has a lora_B bias (lora_bias); PEFT's add_weighted_adapter drops it, so combination {applied.ToName()} would lose it. Merge into the weights with delta_sum, which adds s·b to the base bias as PEFT's merge does.");
                }
            }
            if (newAdapter && a.ExtraTensors.Count > 0)
            {
                throw MergeThrow.Invalid(a.Directory, $"saved full tensors ({string.Join(", ", a.ExtraTensors.Take(5).Select(x => $"'{x.Key}'"))}) cannot be combined into a new LoRA adapter; merge this adapter into the base weights instead.");
            }
            if ((applied.IsFactorSpace() || applied == Combination.Cat) && a.Modules.FirstOrDefault(m => m.Kind is not (AdapterModuleKind.Lora or AdapterModuleKind.LoraEmbedding)) is { } other)
            {
                throw MergeThrow.Invalid(a.Directory, $"module '{other.ModulePath}' is {other.Kind}; combination {applied.ToName()} works on LoRA's A and B factors (PEFT's add_weighted_adapter is LoRA-only); use svd or a *_svd combination, or delta_sum into a model.");
            }
        }

        if (applied.IsFactorSpace() && adapters.Select(a => PeftRank(a.Adapter)).Distinct().Count() > 1)
        {
            // PEFT's _check_add_weighted_adapter raises here too (same r for linear, ties, dare_*, magnitude_prune).
            throw MergeThrow.Invalid(adapters[0].Adapter.Directory, $"combination {applied.ToName()}: adapter ranks",
                string.Join(", ", adapters.Select(a => $"{PeftRank(a.Adapter)} ({a.Adapter.Directory})")),
                "one rank for all adapters, as PEFT requires for linear, ties, dare_linear, dare_ties and magnitude_prune; use cat, svd or a *_svd combination for different ranks");
        }
        int newRank = options.SvdRank ?? adapters.Max(a => PeftRank(a.Adapter));
        return new CombinationChoice(applied, newRank, warnings);
    }
}
