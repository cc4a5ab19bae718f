namespace OnnxLora.Merge.Internals;

/// <summary>The task-tensor merge of a combination: PEFT's functions in peft/utils/merge_utils.py.</summary>
internal enum TaskMethod
{
    /// <summary><c>task_arithmetic</c>: Σ wᵢ·τᵢ.</summary>
    TaskArithmetic,

    /// <summary><c>ties</c>: magnitude prune, elect the sign, disjoint mean of the weighted values.</summary>
    Ties,

    /// <summary><c>dare_linear</c>: random prune with rescale, then Σ wᵢ·τᵢ.</summary>
    DareLinear,

    /// <summary><c>dare_ties</c>: random prune with rescale, elect the sign, disjoint mean.</summary>
    DareTies,

    /// <summary><c>magnitude_prune</c>: magnitude prune, then Σ wᵢ·τᵢ.</summary>
    MagnitudePrune,
}

/// <summary>
/// PEFT's task-tensor merges (peft/utils/merge_utils.py) on fp64 arrays of equal length. Each
/// function follows PEFT's: pruning acts on each task tensor alone; the sign election
/// (<c>calculate_majority_sign_mask</c>) looks at the pruned, unweighted tensors; <c>disjoint_merge</c>
/// averages the weighted values that agree with the elected sign, over max(count, 1).
/// </summary>
internal static class TaskMerge
{
    /// <summary>Merges task tensors with weights; <paramref name="seeds"/> seed each tensor's DARE mask.</summary>
    public static double[] Merge(IReadOnlyList<double[]> tasks, IReadOnlyList<double> weights, TaskMethod method,
        double density, MajoritySignMethod sign, IReadOnlyList<ulong> seeds)
    {
        var pruned = method switch
        {
            TaskMethod.Ties or TaskMethod.MagnitudePrune => tasks.Select(t => MagnitudePrune(t, density)).ToList(),
            TaskMethod.DareLinear or TaskMethod.DareTies => tasks.Select((t, i) => RandomPrune(t, density, seeds[i])).ToList(),
            _ => tasks.ToList(),
        };
        int n = tasks[0].Length;
        var result = new double[n];
        if (method is TaskMethod.Ties or TaskMethod.DareTies)
        {
            for (int e = 0; e < n; e++)
            {
                double total = 0;
                foreach (var p in pruned)
                {
                    total += sign == MajoritySignMethod.Total ? p[e] : Math.Sign(p[e]);
                }
                int majority = total >= 0 ? 1 : -1;
                double sum = 0;
                int agreeing = 0;
                for (int i = 0; i < pruned.Count; i++)
                {
                    if (Math.Sign(pruned[i][e]) == majority)
                    {
                        sum += weights[i] * pruned[i][e];
                        agreeing++;
                    }
                }
                result[e] = sum / Math.Max(agreeing, 1);
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
            result[e] = sum;
        }
        return result;
    }

    /// <summary>
    /// PEFT's <c>magnitude_based_pruning</c>: keeps the k = int(density·n) values of largest magnitude
    /// (ties broken by position; torch.topk leaves that unspecified); density ≥ 1 keeps all.
    /// </summary>
    public static double[] MagnitudePrune(double[] t, double density)
    {
        if (density >= 1)
        {
            return t;
        }
        int k = (int)(density * t.Length);
        var result = new double[t.Length];
        var order = Enumerable.Range(0, t.Length).OrderByDescending(i => Math.Abs(t[i])).ThenBy(i => i).Take(k);
        foreach (int i in order)
        {
            result[i] = t[i];
        }
        return result;
    }

    /// <summary>
    /// PEFT's <c>random_pruning</c> with rescale (DARE): keeps each value with probability density and
    /// divides kept values by density (PEFT PR #3152 restored that division). The mask comes from a
    /// seeded SplitMix64 stream, not torch.bernoulli, so it is reproducible but not PEFT's own draw.
    /// </summary>
    public static double[] RandomPrune(double[] t, double density, ulong seed)
    {
        if (density >= 1)
        {
            return t;
        }
        var result = new double[t.Length];
        if (density <= 0)
        {
            return result;
        }
        var rng = new SplitMix64(seed);
        for (int i = 0; i < t.Length; i++)
        {
            if (rng.NextDouble() < density)
            {
                result[i] = t[i] / density;
            }
        }
        return result;
    }

    /// <summary>A stable seed for (options seed, a name such as "module/lora_A", adapter index): FNV-1a of the name mixed with both.</summary>
    public static ulong SeedFor(int seed, string name, int adapterIndex)
    {
        ulong h = 14695981039346656037UL;
        foreach (char c in name)
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
