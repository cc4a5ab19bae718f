using System.Diagnostics;

namespace OnnxLora.Validate.Internals;

/// <summary>
/// Times bound runs of every model in interleaved rounds: each round runs each model once, the starting model
/// rotating from round to round (M U B, U B M, B M U, …), so drift of the machine and order effects touch every
/// model alike, and ratios are taken between runs of the same round.
/// </summary>
internal static class LatencyBench
{
    private const int MaxRounds = 1_000_000;

    public static LatencyReport Measure(
        IReadOnlyList<ModelSession> models, ValidationOptions options, long batch, long tokens, string binding, CancellationToken cancel)
    {
        int k = models.Count;
        for (int w = 0; w < options.Warmup; w++)
        {
            for (int j = 0; j < k; j++)
            {
                models[(w + j) % k].TimedRun();
            }
        }

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
                samples[m].Add(models[m].TimedRun());
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

        var ratios = new List<LatencyRatio>();
        int Index(ModelRole role) => models.ToList().FindIndex(x => x.Role == role);
        int merged = Index(ModelRole.Merged), unmerged = Index(ModelRole.Unmerged), baseModel = Index(ModelRole.Base), adapter = Index(ModelRole.Adapter);
        if (merged >= 0 && baseModel >= 0)
        {
            ratios.Add(Stats.Ratio("merged/base", ModelRole.Merged, ModelRole.Base, samples[merged], samples[baseModel]));
        }
        if (merged >= 0 && unmerged >= 0)
        {
            ratios.Add(Stats.Ratio("unmerged/merged", ModelRole.Unmerged, ModelRole.Merged, samples[unmerged], samples[merged]));
        }
        if (unmerged >= 0 && baseModel >= 0)
        {
            ratios.Add(Stats.Ratio("unmerged/base", ModelRole.Unmerged, ModelRole.Base, samples[unmerged], samples[baseModel]));
        }
        if (merged >= 0 && adapter >= 0)
        {
            ratios.Add(Stats.Ratio("adapter/merged", ModelRole.Adapter, ModelRole.Merged, samples[adapter], samples[merged]));
        }
        if (adapter >= 0 && baseModel >= 0)
        {
            ratios.Add(Stats.Ratio("adapter/base", ModelRole.Adapter, ModelRole.Base, samples[adapter], samples[baseModel]));
        }
        return new LatencyReport(
            options.Duration is null ? "runs" : "duration", options.Warmup, rounds, options.Duration?.TotalSeconds,
            batch, tokens, binding, perModel, ratios);
    }
}
