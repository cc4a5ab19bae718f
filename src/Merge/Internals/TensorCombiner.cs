using OnnxLora.Core.Peft;

namespace OnnxLora.Merge.Internals;

/// <summary>
/// Merges every contribution to one tensor according to the plan's combination. Task tensors of
/// DoRA modules are taken against the base weight (not against other adapters' results), so the
/// order of adapters never matters.
/// </summary>
internal static class TensorCombiner
{
    public static void Apply(MergePlan plan, string tensorName, IReadOnlyList<MergePlanEntry> entries, Span<float> weight)
    {
        var options = plan.Options;
        if (options.Combination is Combination.Linear or Combination.Cat)
        {
            float[]? baseWeight = entries.Any(e => e.UseDora) && entries.Count > 1 ? weight.ToArray() : null;
            var doraTasks = entries.Where(e => e.UseDora && baseWeight is not null)
                .Select(e => (e, Adapter(plan, e).ReadUpdate(e.Module).TaskTensor(baseWeight))).ToList();
            foreach (var e in entries)
            {
                if (baseWeight is not null && e.UseDora)
                {
                    continue;
                }
                Adapter(plan, e).ReadUpdate(e.Module).MergeInto(weight, e.Weight);
            }
            foreach (var (e, task) in doraTasks)
            {
                for (int i = 0; i < weight.Length; i++)
                {
                    weight[i] = (float)(weight[i] + e.Weight * task[i]);
                }
            }
            return;
        }

        float[] baseCopy = weight.ToArray();
        var tasks = entries.Select(e => Adapter(plan, e).ReadUpdate(e.Module).TaskTensor(baseCopy)).ToList();
        var weights = entries.Select(e => e.Weight).ToList();
        float[] combined;
        if (options.Combination == Combination.Svd)
        {
            combined = TaskMerge.Combine(tasks, weights, Combination.Linear, 1.0, options.MajoritySign, []);
            var first = entries[0].Module;
            int rows = first.WeightIsTransposed ? first.InFeatures : first.OutFeatures;
            int cols = first.WeightIsTransposed ? first.OutFeatures : first.InFeatures;
            int rank = options.SvdRank ?? entries.Max(e => e.Rank);
            var (left, right, k) = TruncatedSvd.Factor(combined, rows, cols, rank);
            combined = DeltaMath.MatMul(left, right, rows, k, cols);
        }
        else
        {
            var seeds = entries.Select(e => TaskMerge.SeedFor(options.Seed, tensorName, e.AdapterIndex)).ToList();
            combined = TaskMerge.Combine(tasks, weights, options.Combination, options.Density, options.MajoritySign, seeds);
        }
        for (int i = 0; i < weight.Length; i++)
        {
            weight[i] = (float)((double)weight[i] + combined[i]);
        }
    }

    private static PeftAdapter Adapter(MergePlan plan, MergePlanEntry e) => plan.Adapters[e.AdapterIndex].Adapter;
}
