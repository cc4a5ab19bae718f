namespace OnnxLora.Merge.Tests;

/// <summary>
/// An fp64 reference for PEFT's adapter combinations, written from PEFT's published definitions
/// (peft/utils/merge_utils.py and LoraModel.add_weighted_adapter in peft/tuners/lora/model.py), not
/// from this project's code: tensors are handled whole the way merge_utils handles them (a stack of
/// task tensors, a sign per element, masks, sums), magnitude pruning by a threshold, and the rank-k
/// truncation by an eigen-decomposition of MᵀM (Jacobi), not by an SVD library.
/// </summary>
internal static class PeftReference
{
    /// <summary>One adapter's LoRA factors on one module: A [r, in], B [out, r], scaling s, user weight w.</summary>
    public sealed record Lora(double[] A, double[] B, int R, int In, int Out, double S, double W)
    {
        /// <summary>get_delta_weight in [out, in] orientation: s·B·A.</summary>
        public double[] Delta() => MatMul(B, A, Out, R, In).Select(v => v * S).ToArray();
    }

    /// <summary>A LoRA from fp32 factors.</summary>
    public static Lora Of(float[] a, float[] b, int r, int inF, int outF, double s, double w) =>
        new(a.Select(x => (double)x).ToArray(), b.Select(x => (double)x).ToArray(), r, inF, outF, s, w);

    /// <summary>
    /// ΔW' [out, in] of the adapter add_weighted_adapter builds for one module, for a combination name
    /// ("delta_sum" is Σ wᵢ·sᵢ·BᵢAᵢ). A single adapter uses linear, as PEFT does.
    /// </summary>
    public static double[] CombinedDelta(string combination, IReadOnlyList<Lora> loras, double density, bool totalSign, int svdRank)
    {
        int outF = loras[0].Out, inF = loras[0].In;
        if (loras.Count == 1 && combination != "delta_sum")
        {
            combination = "linear";
        }
        switch (combination)
        {
            case "delta_sum":
            case "cat":
                return Sum(loras.Select(l => l.Delta().Select(v => v * l.W).ToArray()).ToList());
            case "linear":
            case "ties":
            case "magnitude_prune":
            case "dare_linear" when density >= 1:
            case "dare_ties" when density >= 1:
                {
                    // √|w·s| on both factors, the sign of w·s on A only.
                    var wa = loras.Select(l => Math.Sign(l.W * l.S) * Math.Sqrt(Math.Abs(l.W * l.S))).ToList();
                    var wb = loras.Select(l => Math.Sqrt(Math.Abs(l.W * l.S))).ToList();
                    var a = Merge(combination, loras.Select(l => l.A).ToList(), wa, density, totalSign);
                    var b = Merge(combination, loras.Select(l => l.B).ToList(), wb, density, totalSign);
                    return MatMul(b, a, outF, loras[0].R, inF);
                }
            case "svd":
            case "ties_svd":
            case "magnitude_prune_svd":
            case "dare_linear_svd" when density >= 1:
            case "dare_ties_svd" when density >= 1:
                {
                    // get_delta_weight carries sᵢ; the weights are wᵢ (PEFT PR #3111).
                    var merged = Merge(combination.Replace("_svd", "", StringComparison.Ordinal), loras.Select(l => l.Delta()).ToList(), loras.Select(l => l.W).ToList(), density, totalSign);
                    return BestRankApproximation(merged, outF, inF, svdRank);
                }
            default:
                throw new ArgumentException($"no deterministic reference for {combination} at density {density}");
        }
    }

    /// <summary>The merge_utils function for a (factor-space) combination name.</summary>
    public static double[] Merge(string name, IReadOnlyList<double[]> tasks, IReadOnlyList<double> weights, double density, bool totalSign) => name switch
    {
        "linear" or "svd" or "dare_linear" => Sum(tasks.Select((t, i) => t.Select(v => v * weights[i]).ToArray()).ToList()),
        "magnitude_prune" => Sum(tasks.Select((t, i) => Prune(t, density).Select(v => v * weights[i]).ToArray()).ToList()),
        "ties" or "dare_ties" => Ties(name == "ties" ? tasks.Select(t => Prune(t, density)).ToList() : tasks.ToList(), weights, totalSign),
        _ => throw new ArgumentException(name),
    };

    /// <summary>magnitude_based_pruning: keep the values whose magnitude reaches the k-th largest, k = int(density·n).</summary>
    public static double[] Prune(double[] t, double density)
    {
        if (density >= 1)
        {
            return t;
        }
        int k = (int)(density * t.Length);
        if (k == 0)
        {
            return new double[t.Length];
        }
        double threshold = t.Select(Math.Abs).OrderDescending().ElementAt(k - 1);
        return t.Select(v => Math.Abs(v) >= threshold ? v : 0.0).ToArray();
    }

    /// <summary>
    /// calculate_majority_sign_mask + disjoint_merge on already pruned tensors: the elected sign is that of
    /// the column sum (total) or of the sum of signs (frequency), ≥ 0 counting as +; the result is the sum of
    /// the weighted values whose own sign equals it, over the number of those values (at least 1).
    /// </summary>
    public static double[] Ties(IReadOnlyList<double[]> pruned, IReadOnlyList<double> weights, bool totalSign)
    {
        int n = pruned[0].Length;
        var signs = pruned.Select(t => t.Select(v => (double)Math.Sign(v)).ToArray()).ToList();
        var magnitude = totalSign ? Sum(pruned) : Sum(signs);
        var majority = magnitude.Select(v => v >= 0 ? 1.0 : -1.0).ToArray();
        var masks = signs.Select(s => s.Select((v, e) => v == majority[e] ? 1.0 : 0.0).ToArray()).ToList();
        var mixed = Sum(pruned.Select((t, i) => t.Select((v, e) => v * weights[i] * masks[i][e]).ToArray()).ToList());
        var kept = Sum(masks);
        return mixed.Select((v, e) => v / Math.Max(kept[e], 1.0)).ToArray();
    }

    public static double[] Sum(IReadOnlyList<double[]> tensors)
    {
        var s = new double[tensors[0].Length];
        foreach (var t in tensors)
        {
            for (int i = 0; i < s.Length; i++)
            {
                s[i] += t[i];
            }
        }
        return s;
    }

    public static double[] MatMul(double[] l, double[] r, int rows, int k, int cols)
    {
        var p = new double[rows * cols];
        for (int i = 0; i < rows; i++)
        {
            for (int j = 0; j < cols; j++)
            {
                double s = 0;
                for (int t = 0; t < k; t++)
                {
                    s += l[i * k + t] * r[t * cols + j];
                }
                p[i * cols + j] = s;
            }
        }
        return p;
    }

    /// <summary>
    /// The best rank-k approximation of M [rows, cols] (what truncating its SVD to k gives): M·V_k·V_kᵀ
    /// with V_k the eigenvectors of MᵀM for its k largest eigenvalues, found by cyclic Jacobi rotations.
    /// </summary>
    public static double[] BestRankApproximation(double[] m, int rows, int cols, int k)
    {
        k = Math.Min(k, Math.Min(rows, cols));
        int n = cols;
        var g = new double[n, n];
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < n; j++)
            {
                double s = 0;
                for (int r = 0; r < rows; r++)
                {
                    s += m[r * cols + i] * m[r * cols + j];
                }
                g[i, j] = s;
            }
        }
        var v = new double[n, n];
        for (int i = 0; i < n; i++)
        {
            v[i, i] = 1;
        }
        for (int sweep = 0; sweep < 100; sweep++)
        {
            double off = 0, total = 0;
            for (int i = 0; i < n; i++)
            {
                for (int j = 0; j < n; j++)
                {
                    total += g[i, j] * g[i, j];
                    if (i != j)
                    {
                        off += g[i, j] * g[i, j];
                    }
                }
            }
            if (off <= 1e-30 * total)
            {
                break;
            }
            for (int p = 0; p < n - 1; p++)
            {
                for (int q = p + 1; q < n; q++)
                {
                    if (g[p, q] == 0)
                    {
                        continue;
                    }
                    double theta = (g[q, q] - g[p, p]) / (2 * g[p, q]);
                    double t = Math.Sign(theta == 0 ? 1 : theta) / (Math.Abs(theta) + Math.Sqrt(theta * theta + 1));
                    double c = 1 / Math.Sqrt(t * t + 1), s = t * c;
                    for (int r = 0; r < n; r++)
                    {
                        double grp = g[r, p], grq = g[r, q];
                        g[r, p] = c * grp - s * grq;
                        g[r, q] = s * grp + c * grq;
                    }
                    for (int r = 0; r < n; r++)
                    {
                        double gpr = g[p, r], gqr = g[q, r];
                        g[p, r] = c * gpr - s * gqr;
                        g[q, r] = s * gpr + c * gqr;
                    }
                    for (int r = 0; r < n; r++)
                    {
                        double vrp = v[r, p], vrq = v[r, q];
                        v[r, p] = c * vrp - s * vrq;
                        v[r, q] = s * vrp + c * vrq;
                    }
                }
            }
        }
        var top = Enumerable.Range(0, n).OrderByDescending(i => g[i, i]).Take(k).ToArray();
        // P = V_k·V_kᵀ [n, n]; result = M·P.
        var proj = new double[n * n];
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < n; j++)
            {
                double s = 0;
                foreach (int e in top)
                {
                    s += v[i, e] * v[j, e];
                }
                proj[i * n + j] = s;
            }
        }
        return MatMul(m, proj, rows, n, n);
    }
}
