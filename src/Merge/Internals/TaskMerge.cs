namespace OnnxLora.Merge.Internals;

/// <summary>
/// PEFT's task-tensor combinations (peft.utils.merge_utils) on fp32 arrays: task arithmetic,
/// magnitude pruning, DARE random pruning with rescale, TIES sign election and disjoint merge.
/// </summary>
internal static class TaskMerge
{
    /// <summary>Combines task tensors of equal length with weights; <paramref name="seeds"/> seed DARE per task.</summary>
    public static float[] Combine(IReadOnlyList<float[]> tasks, IReadOnlyList<double> weights, Combination combination,
        double density, MajoritySignMethod sign, IReadOnlyList<ulong> seeds)
    {
        int n = tasks[0].Length;
        var pruned = combination switch
        {
            Combination.Ties or Combination.MagnitudePrune => tasks.Select(t => MagnitudePrune(t, density)).ToList(),
            Combination.DareLinear or Combination.DareTies => tasks.Select((t, i) => RandomPrune(t, density, seeds[i])).ToList(),
            _ => tasks.ToList(),
        };
        var result = new float[n];
        if (combination is Combination.Ties or Combination.DareTies)
        {
            for (int e = 0; e < n; e++)
            {
                double total = 0;
                for (int i = 0; i < pruned.Count; i++)
                {
                    float v = pruned[i][e];
                    total += sign == MajoritySignMethod.Total ? v : Math.Sign(v);
                }
                int majority = total >= 0 ? 1 : -1;
                double sum = 0;
                int kept = 0;
                for (int i = 0; i < pruned.Count; i++)
                {
                    float v = pruned[i][e];
                    if (Math.Sign(v) == majority)
                    {
                        sum += weights[i] * v;
                        kept++;
                    }
                }
                result[e] = (float)(sum / Math.Max(kept, 1));
            }
            return result;
        }
        for (int e = 0; e < n; e++)
        {
            double sum = 0;
            for (int i = 0; i < pruned.Count; i++)
            {
                sum += weights[i] * pruned[i][e];
            }
            result[e] = (float)sum;
        }
        return result;
    }

    /// <summary>Keeps the int(density·n) values of largest magnitude (density ≥ 1 keeps all).</summary>
    public static float[] MagnitudePrune(float[] t, double density)
    {
        if (density >= 1)
        {
            return t;
        }
        int k = (int)(density * t.Length);
        var result = new float[t.Length];
        if (k == 0)
        {
            return result;
        }
        var order = new int[t.Length];
        var keys = new float[t.Length];
        for (int i = 0; i < t.Length; i++)
        {
            order[i] = i;
            keys[i] = -Math.Abs(t[i]);
        }
        Array.Sort(keys, order);
        for (int j = 0; j < k; j++)
        {
            result[order[j]] = t[order[j]];
        }
        return result;
    }

    /// <summary>Keeps each value with probability density and divides kept values by density (DARE).</summary>
    public static float[] RandomPrune(float[] t, double density, ulong seed)
    {
        if (density >= 1)
        {
            return t;
        }
        var result = new float[t.Length];
        if (density <= 0)
        {
            return result;
        }
        var rng = new SplitMix64(seed);
        for (int i = 0; i < t.Length; i++)
        {
            if (rng.NextDouble() < density)
            {
                result[i] = (float)(t[i] / density);
            }
        }
        return result;
    }

    /// <summary>A stable seed for (options seed, tensor name, adapter index): FNV-1a of the name mixed with both.</summary>
    public static ulong SeedFor(int seed, string tensor, int adapterIndex)
    {
        ulong h = 14695981039346656037UL;
        foreach (char c in tensor)
        {
            h = (h ^ c) * 1099511628211UL;
        }
        return h ^ ((ulong)(uint)seed << 32) ^ (ulong)(uint)adapterIndex * 0x9E3779B97F4A7C15UL;
    }

    /// <summary>SplitMix64: a small, fully specified generator so masks are reproducible across .NET versions.</summary>
    private struct SplitMix64(ulong state)
    {
        private ulong _state = state;

        public double NextDouble()
        {
            ulong z = _state += 0x9E3779B97F4A7C15UL;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            z ^= z >> 31;
            return (z >> 11) * (1.0 / (1UL << 53));
        }
    }
}
