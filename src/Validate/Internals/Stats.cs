namespace OnnxLora.Validate.Internals;

/// <summary>Summary statistics of timing samples.</summary>
internal static class Stats
{
    /// <summary>Percentile of sorted values by linear interpolation between closest ranks (q in [0, 1]).</summary>
    public static double Percentile(IReadOnlyList<double> sorted, double q)
    {
        if (sorted.Count == 0)
        {
            return double.NaN;
        }
        double h = (sorted.Count - 1) * q;
        int lo = (int)Math.Floor(h);
        int hi = Math.Min(lo + 1, sorted.Count - 1);
        return sorted[lo] + (h - lo) * (sorted[hi] - sorted[lo]);
    }

    public static LatencyStats Summarise(IReadOnlyList<double> samples)
    {
        var sorted = samples.Order().ToArray();
        int n = sorted.Length;
        double mean = n == 0 ? double.NaN : sorted.Average();
        double variance = n < 2 ? 0 : sorted.Sum(x => (x - mean) * (x - mean)) / (n - 1);
        return new LatencyStats(
            n, mean, Math.Sqrt(variance),
            n == 0 ? double.NaN : sorted[0],
            Percentile(sorted, 0.50), Percentile(sorted, 0.90), Percentile(sorted, 0.95), Percentile(sorted, 0.99),
            n == 0 ? double.NaN : sorted[^1]);
    }

    public static LatencyRatio Ratio(string name, ModelRole numerator, ModelRole denominator, IReadOnlyList<double> num, IReadOnlyList<double> den)
    {
        int pairs = Math.Min(num.Count, den.Count);
        var ratios = new double[pairs];
        for (int i = 0; i < pairs; i++)
        {
            ratios[i] = num[i] / den[i];
        }
        Array.Sort(ratios);
        return new LatencyRatio(
            name, numerator, denominator, pairs,
            Percentile(ratios, 0.5), pairs == 0 ? double.NaN : ratios.Average(),
            Percentile(ratios, 0.10), Percentile(ratios, 0.90), Percentile(ratios, 0.25), Percentile(ratios, 0.75));
    }
}
