namespace OnnxLora.Validate.Internals;

/// <summary>
/// The percentile bootstrap of medians and of ratios of medians that cross-run comparison uses (docs/compare.md,
/// "The statistics"). Deterministic: the resamples are drawn by <see cref="Random"/> with a given seed.
/// </summary>
internal static class Bootstrap
{
    /// <summary>The median as <see cref="Stats.Percentile"/> gives it (the mean of the two middle values for even counts).</summary>
    public static double Median(IReadOnlyList<double> samples) => Stats.Percentile(samples.Order().ToArray(), 0.5);

    /// <summary>
    /// The medians of <paramref name="resamples"/> bootstrap resamples of <paramref name="samples"/>: each resample
    /// draws as many values as there are samples, uniformly with replacement. Because the samples are sorted first,
    /// a resample's median is the sample at the median of the drawn ranks, found by counting the draws per rank, so
    /// each resample costs O(n) and no sort.
    /// </summary>
    public static double[] Medians(IReadOnlyList<double> samples, int resamples, int seed)
    {
        double[] sorted = [.. samples.Order()];
        int n = sorted.Length;
        if (n == 0)
        {
            throw new ArgumentException("no samples to resample", nameof(samples));
        }
        // 0-based ranks of the middle values of n: equal when n is odd.
        int lowRank = (n - 1) / 2, highRank = n / 2;
        var counts = new int[n];
        var rng = new Random(seed);
        var medians = new double[resamples];
        for (int r = 0; r < resamples; r++)
        {
            Array.Clear(counts);
            for (int i = 0; i < n; i++)
            {
                counts[rng.Next(n)]++;
            }
            int seen = 0, low = -1, high = -1;
            for (int k = 0; k < n; k++)
            {
                seen += counts[k];
                if (low < 0 && seen > lowRank)
                {
                    low = k;
                }
                if (seen > highRank)
                {
                    high = k;
                    break;
                }
            }
            medians[r] = (sorted[low] + sorted[high]) / 2;
        }
        return medians;
    }

    /// <summary>The two-sided percentile interval at <paramref name="confidence"/> of bootstrap replicates.</summary>
    public static (double Low, double High) Interval(IEnumerable<double> replicates, double confidence)
    {
        double[] sorted = [.. replicates.Order()];
        double tail = (1 - confidence) / 2;
        return (Stats.Percentile(sorted, tail), Stats.Percentile(sorted, 1 - tail));
    }

    /// <summary>Replicate-by-replicate ratios of two independent sets of bootstrap medians.</summary>
    public static IEnumerable<double> Ratios(double[] numerator, double[] denominator) =>
        numerator.Zip(denominator, (a, b) => a / b);
}
