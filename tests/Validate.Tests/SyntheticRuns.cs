namespace OnnxLora.Validate.Tests;

/// <summary>
/// Validation reports with synthetic latencies for comparison tests. The noise imitates timed runs on a busy CPU:
/// a lognormal spread of 3% around the median, a slow drift (AR(1), about 1%), 5% outliers that take on average
/// 50% longer, and an offset of the whole run (0.5%) for what differs between two runs of the same model.
/// </summary>
internal static class SyntheticRuns
{
    public static double[] Latencies(int n, double medianMs, double slowdown, int seed)
    {
        var rng = new Random(seed);
        double Normal() => Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());
        double offset = 0.005 * Normal();
        double drift = 0;
        var samples = new double[n];
        for (int i = 0; i < n; i++)
        {
            drift = 0.9 * drift + 0.004 * Normal();
            double outlier = rng.NextDouble() < 0.05 ? 1 - 0.5 * Math.Log(1 - rng.NextDouble()) : 1;
            samples[i] = medianMs * slowdown * Math.Exp(0.03 * Normal() + drift + offset) * outlier;
        }
        return samples;
    }

    /// <summary>The hand-made known report with these merged (and optionally base) latencies and no baseline.</summary>
    public static ValidationReport Report(double[] merged, double[]? baseModel = null)
    {
        var known = ReportWriterTests.KnownReport();
        var models = new List<ModelLatency> { Latency(ModelRole.Merged, merged) };
        if (baseModel is not null)
        {
            models.Add(Latency(ModelRole.Base, baseModel));
        }
        return known with
        {
            Baseline = null,
            Latency = known.Latency! with { Mode = "runs", Rounds = merged.Length, Models = models, Ratios = [] },
        };
    }

    public static ComparedReport Compared(string label, ValidationReport report) => new(label, $"/runs/{label}/validation.json", report);

    private static ModelLatency Latency(ModelRole role, double[] samples)
    {
        var sorted = samples.Order().ToArray();
        double P(double q) => sorted[(int)Math.Round(q * (sorted.Length - 1))];
        return new ModelLatency(role, new LatencyStats(samples.Length, samples.Average(), 0, sorted[0], P(0.5), P(0.9), P(0.95), P(0.99), sorted[^1]),
            1000 / samples.Average(), 12000 / samples.Average(), samples);
    }
}
