using System.Diagnostics;

namespace OnnxLora.Validate.Internals;

/// <summary>
/// Times bound runs of every model in interleaved rounds: each round runs each model once, the starting model
/// rotating from round to round (M U B, U B M, B M U, …), so drift of the machine and order effects touch every
/// model alike, and ratios are taken between runs of the same round. A model that runs in well under a scheduler time
/// slice is timed as a group of runs per sample (<see cref="RunsPerSample"/>): one timed run of a tiny model either
/// escapes preemption or absorbs a whole slice, so on a busy machine its per-round ratios split into two clusters an
/// order of magnitude apart (measured on the sample model at load 10: quartiles 0.10 and 12.7) and their median decides
/// nothing; a sample of at least <see cref="MinSampleMs"/> averages the preemptions over many runs.
/// </summary>
internal static class LatencyBench
{
    private const int MaxRounds = 1_000_000;

    /// <summary>The shortest sample wanted: a few of Linux's scheduler slices (3–4 ms under load).</summary>
    internal const double MinSampleMs = 10;

    /// <summary>Runs per sample cap: a model faster than 1 µs is timed by groups of this many.</summary>
    internal const int MaxRunsPerSample = 10_000;

    /// <summary>
    /// Runs per sample, the same for every model so each round times the same work: enough for the fastest model's sample
    /// (<paramref name="fastestRunMs"/>, its quickest warm-up run) to last <see cref="MinSampleMs"/>; 1 when unknown (no warm-up).
    /// </summary>
    internal static int RunsPerSample(double fastestRunMs) =>
        !(fastestRunMs > 0) || double.IsInfinity(fastestRunMs) ? 1
            : (int)Math.Clamp(Math.Ceiling(MinSampleMs / Math.Max(fastestRunMs, MinSampleMs / MaxRunsPerSample)), 1, MaxRunsPerSample);

    public static LatencyReport Measure(
        IReadOnlyList<ModelSession> models, ValidationOptions options, long batch, long tokens, string binding, CancellationToken cancel)
    {
        int k = models.Count;
        double fastest = double.PositiveInfinity;
        for (int w = 0; w < options.Warmup; w++)
        {
            for (int j = 0; j < k; j++)
            {
                fastest = Math.Min(fastest, models[(w + j) % k].TimedRun());
            }
        }
        int runsPerSample = RunsPerSample(fastest);

        var samples = models.Select(_ => new List<double>()).ToArray();
        long start = Stopwatch.GetTimestamp();
        int rounds = 0;
        while (true)
        {
            if (options.Duration is TimeSpan budget)
            {
                if (rounds > 0 && (Stopwatch.GetElapsedTime(start) >= budget || rounds >= MaxRounds))
                {
                    break;
                }
            }
            else if (rounds >= options.Runs)
            {
                break;
            }
            cancel.ThrowIfCancellationRequested();
            for (int j = 0; j < k; j++)
            {
                int m = (rounds + j) % k;
                samples[m].Add(models[m].TimedRun(runsPerSample));
            }
            rounds++;
        }

        var perModel = new List<ModelLatency>();
        for (int m = 0; m < k; m++)
        {
            var stats = Stats.Summarise(samples[m]);
            double seconds = stats.MeanMs / 1000.0;
            perModel.Add(new ModelLatency(models[m].Role, stats, batch / seconds, tokens / seconds, samples[m]));
        }

        var ratios = Ratios([.. models.Select(x => x.Role)], samples);
        return new LatencyReport(
            options.Duration is null ? "runs" : "duration", options.Warmup, rounds, options.Duration?.TotalSeconds,
            batch, tokens, binding, perModel, ratios)
        {
            RunsPerSample = runsPerSample,
        };
    }

    /// <summary>
    /// The per-round ratios reported between the roles present (merged/base, unmerged/merged, unmerged/base,
    /// adapter/merged, adapter/base); <paramref name="samples"/>[i] holds role i's per-round values.
    /// </summary>
    public static List<LatencyRatio> Ratios(IReadOnlyList<ModelRole> roles, IReadOnlyList<IReadOnlyList<double>> samples)
    {
        var ratios = new List<LatencyRatio>();
        foreach (var (numerator, denominator) in RatioPairs)
        {
            int n = IndexOf(numerator), d = IndexOf(denominator);
            if (n >= 0 && d >= 0)
            {
                string name = $"{numerator.ToString().ToLowerInvariant()}/{denominator.ToString().ToLowerInvariant()}";
                ratios.Add(Stats.Ratio(name, numerator, denominator, samples[n], samples[d]));
            }
        }
        return ratios;

        int IndexOf(ModelRole role)
        {
            for (int i = 0; i < roles.Count; i++)
            {
                if (roles[i] == role)
                {
                    return i;
                }
            }
            return -1;
        }
    }

    private static readonly (ModelRole Numerator, ModelRole Denominator)[] RatioPairs =
    [
        (ModelRole.Merged, ModelRole.Base), (ModelRole.Unmerged, ModelRole.Merged), (ModelRole.Unmerged, ModelRole.Base),
        (ModelRole.Adapter, ModelRole.Merged), (ModelRole.Adapter, ModelRole.Base),
    ];
}
