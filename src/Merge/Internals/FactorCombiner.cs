using OnnxLora.Core.Peft;

namespace OnnxLora.Merge.Internals;

/// <summary>One adapter's module among those a combination merges for one module path.</summary>
internal sealed record ModulePart(int AdapterIndex, PeftAdapter Adapter, AdapterModule Module, double Weight);

/// <summary>
/// The combined adapter of one module, as PEFT's <c>add_weighted_adapter</c> builds it: LoRA factors
/// A' [rank, in] and B' [out, rank] with scaling 1 (ΔW' = B'·A' in [out, in] orientation, whatever the
/// base weight's layout). Computed in fp64 and rounded to fp32 once, as the combined adapter stores them.
/// </summary>
internal static class FactorCombiner
{
    /// <summary>Combines the parts of one module path (adapters in the order given) with <paramref name="combination"/>.</summary>
    public static (float[] A, float[] B, int Rank) Combine(string modulePath, IReadOnlyList<ModulePart> parts, Combination combination, MergeOptions options, int newRank)
    {
        var first = parts[0].Module;
        int inF = first.InFeatures, outF = first.OutFeatures;
        if (combination is Combination.Cat or Combination.DeltaSum)
        {
            return Concatenate(modulePath, parts);
        }
        if (combination.IsFactorSpace())
        {
            return FactorSpace(modulePath, parts, combination, options);
        }
        // PEFT's _svd_generalized_task_arithmetic_weighted_adapter: the task tensors are get_delta_weight(adapter),
        // which already carries the scaling sᵢ, and the weights are the user's wᵢ. PEFT releases before PR #3111
        // passed wᵢ·sᵢ as the weights, applying sᵢ twice; this follows the fix, which makes svd of one adapter
        // at full rank reproduce that adapter and agrees with linear/cat/merge on the scale of each update.
        var tasks = parts.Select(p => ToDouble(p.Adapter.ReadUpdate(p.Module).Delta())).ToList();
        var weights = parts.Select(p => p.Weight).ToList();
        var seeds = parts.Select(p => TaskMerge.SeedFor(options.Seed, modulePath + "/delta", p.AdapterIndex)).ToList();
        var merged = TaskMerge.Merge(tasks, weights, combination.Method(), options.Density, options.MajoritySignMethod, seeds);
        var (left, right, k) = TruncatedSvd.Factor(merged, outF, inF, newRank);
        return (ToSingle(right), ToSingle(left), k);
    }

    /// <summary>
    /// PEFT's <c>_generalized_task_arithmetic_weighted_adapter</c>: the A factors merged with weights
    /// sgn(wᵢsᵢ)·√|wᵢsᵢ| and the B factors with √|wᵢsᵢ| (the sign on one side only), each with the
    /// combination's merge_utils function. All parts must share one rank.
    /// </summary>
    private static (float[] A, float[] B, int Rank) FactorSpace(string modulePath, IReadOnlyList<ModulePart> parts, Combination combination, MergeOptions options)
    {
        int rank = parts[0].Module.Rank;
        if (parts.FirstOrDefault(p => p.Module.Rank != rank) is { } odd)
        {
            throw MergeThrow.Invalid(odd.Adapter.Directory, $"module '{modulePath}' rank", odd.Module.Rank.ToString(System.Globalization.CultureInfo.InvariantCulture),
                $"{rank} as in {parts[0].Adapter.Directory}: combination {combination.ToName()} adds the A and B factors element by element, which needs one rank (PEFT's requirement too)");
        }
        var weightsA = new List<double>();
        var weightsB = new List<double>();
        foreach (var p in parts)
        {
            double ws = p.Weight * p.Module.Scaling;
            double root = Math.Sqrt(Math.Abs(ws));
            weightsA.Add(ws >= 0 ? root : -root);
            weightsB.Add(root);
        }
        var tasksA = parts.Select(p => ToDouble(p.Adapter.ReadSingles(p.Module, AdapterTensorRole.LoraA))).ToList();
        var tasksB = parts.Select(p => ToDouble(p.Adapter.ReadSingles(p.Module, AdapterTensorRole.LoraB))).ToList();
        var seedsA = parts.Select(p => TaskMerge.SeedFor(options.Seed, modulePath + "/lora_A", p.AdapterIndex)).ToList();
        var seedsB = parts.Select(p => TaskMerge.SeedFor(options.Seed, modulePath + "/lora_B", p.AdapterIndex)).ToList();
        var method = combination.Method();
        var a = TaskMerge.Merge(tasksA, weightsA, method, options.Density, options.MajoritySignMethod, seedsA);
        var b = TaskMerge.Merge(tasksB, weightsB, method, options.Density, options.MajoritySignMethod, seedsB);
        return (ToSingle(a), ToSingle(b), rank);
    }

    /// <summary>PEFT's "cat": A' = [w₁s₁·A₁; w₂s₂·A₂; …] (rows), B' = [B₁ B₂ …] (columns); B'A' = Σ wᵢ·sᵢ·BᵢAᵢ exactly.</summary>
    private static (float[] A, float[] B, int Rank) Concatenate(string modulePath, IReadOnlyList<ModulePart> parts)
    {
        var first = parts[0].Module;
        int inF = first.InFeatures, outF = first.OutFeatures;
        int rank = parts.Sum(p => p.Module.Rank);
        if (rank > Math.Min(inF, outF))
        {
            throw MergeThrow.Invalid(parts[0].Adapter.Directory, $"module '{modulePath}'", $"a concatenated rank of {rank} for a [{outF}, {inF}] weight",
                $"at most {Math.Min(inF, outF)}; use svd with a smaller rank, or delta_sum into a model");
        }
        var a = new float[rank * inF];
        var b = new float[outF * rank];
        int offset = 0;
        foreach (var p in parts)
        {
            var m = p.Module;
            double f = p.Weight * m.Scaling;
            var ai = p.Adapter.ReadSingles(m, AdapterTensorRole.LoraA);
            var bi = p.Adapter.ReadSingles(m, AdapterTensorRole.LoraB);
            for (int k = 0; k < m.Rank; k++)
            {
                for (int c = 0; c < inF; c++)
                {
                    a[(offset + k) * inF + c] = (float)(f * ai[k * inF + c]);
                }
            }
            for (int o = 0; o < outF; o++)
            {
                for (int k = 0; k < m.Rank; k++)
                {
                    b[o * rank + offset + k] = bi[o * m.Rank + k];
                }
            }
            offset += m.Rank;
        }
        return (a, b, rank);
    }

    private static double[] ToDouble(float[] v)
    {
        var d = new double[v.Length];
        for (int i = 0; i < v.Length; i++)
        {
            d[i] = v[i];
        }
        return d;
    }

    private static float[] ToSingle(double[] v)
    {
        var f = new float[v.Length];
        for (int i = 0; i < v.Length; i++)
        {
            f[i] = (float)v[i];
        }
        return f;
    }
}
