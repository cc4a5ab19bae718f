using System.Globalization;
using ScottPlot;

namespace OnnxLora.Validate.Internals;

/// <summary>The HTML report's charts, drawn by ScottPlot and returned as PNG bytes.</summary>
internal static class ReportCharts
{
    public const int Width = 1100;
    public const int Height = 380;
    private const double ErrorFloor = 1e-12;

    /// <summary>The series colours of every report chart (validation and comparison), in order.</summary>
    internal static readonly Color[] Palette =
    [
        Color.FromHex("#1f77b4"), Color.FromHex("#ff7f0e"), Color.FromHex("#2ca02c"), Color.FromHex("#9467bd"),
        Color.FromHex("#8c564b"), Color.FromHex("#e377c2"), Color.FromHex("#17becf"), Color.FromHex("#bcbd22"),
    ];

    /// <summary>A plot with the reports' font (shared with <see cref="ComparisonCharts"/>).</summary>
    internal static Plot NewPlot()
    {
        var plot = new Plot();
        plot.Font.Set("DejaVu Sans");
        return plot;
    }

    /// <summary>Box plot of each model's latency: box q25–q75, line at the median, whiskers p10–p90, dots at min/max.</summary>
    public static byte[] LatencyBoxes(LatencyReport latency)
    {
        var plot = NewPlot();
        var ticks = new ScottPlot.TickGenerators.NumericManual();
        for (int i = 0; i < latency.Models.Count; i++)
        {
            var m = latency.Models[i];
            var sorted = m.SamplesMs.Order().ToArray();
            var box = new Box
            {
                Position = i,
                BoxMin = Stats.Percentile(sorted, 0.25),
                BoxMax = Stats.Percentile(sorted, 0.75),
                BoxMiddle = Stats.Percentile(sorted, 0.5),
                WhiskerMin = Stats.Percentile(sorted, 0.10),
                WhiskerMax = Stats.Percentile(sorted, 0.90),
                Width = 0.5,
            };
            box.FillColor = Palette[i % Palette.Length].WithAlpha(0.5);
            box.LineColor = Palette[i % Palette.Length];
            plot.Add.Box(box);
            var extremes = plot.Add.Scatter(new double[] { i, i }, new[] { m.Stats.MinMs, m.Stats.MaxMs }, Palette[i % Palette.Length]);
            extremes.LineWidth = 0;
            extremes.MarkerSize = 6;
            ticks.AddMajor(i, $"{Fmt.Role(m.Role)}\nmedian {Fmt.Ms(m.Stats.P50Ms)} ms");
        }
        plot.Axes.Bottom.TickGenerator = ticks;
        plot.Axes.SetLimitsX(-0.6, latency.Models.Count - 0.4);
        plot.Title("Latency per model (box q25–q75, whiskers p10–p90, dots min/max)");
        plot.YLabel("ms per run");
        return plot.GetImageBytes(Width, Height, ImageFormat.Png);
    }

    /// <summary>Each model's latency per round, in the order the interleaved rounds ran.</summary>
    public static byte[] LatencyTimeline(LatencyReport latency)
    {
        var plot = NewPlot();
        for (int i = 0; i < latency.Models.Count; i++)
        {
            var m = latency.Models[i];
            var xs = Enumerable.Range(0, m.SamplesMs.Count).Select(x => (double)x).ToArray();
            var line = plot.Add.ScatterLine(xs, m.SamplesMs.ToArray(), Palette[i % Palette.Length]);
            line.LegendText = Fmt.Role(m.Role);
            line.MarkerSize = m.SamplesMs.Count <= 200 ? 4 : 0;
        }
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic { IntegerTicksOnly = true };
        int rounds = latency.Models.Count == 0 ? 0 : latency.Models.Max(m => m.SamplesMs.Count);
        plot.Axes.SetLimitsX(-0.5, Math.Max(rounds - 0.5, 0.5));
        plot.ShowLegend(Alignment.UpperRight);
        plot.Title("Latency per interleaved round");
        plot.XLabel("round");
        plot.YLabel("ms per run");
        return plot.GetImageBytes(Width, Height, ImageFormat.Png);
    }

    /// <summary>
    /// Per-token latency of each model by decode step (the context grows by one token per step): the median over the
    /// timed rounds, with the rounds' interquartile range (q25–q75) as a shaded band, and the median time to first token
    /// in the legend.
    /// </summary>
    public static byte[] DecodeSteps(DecodeReport decode)
    {
        var plot = NewPlot();
        int steps = decode.NewTokens - 1;
        var xs = Enumerable.Range(1, steps).Select(x => (double)x).ToArray();
        for (int i = 0; i < decode.Models.Count; i++)
        {
            var m = decode.Models[i];
            int rounds = steps == 0 ? 0 : m.StepSamplesMs.Count / steps;
            var median = new double[steps];
            var low = new double[steps];
            var high = new double[steps];
            for (int s = 0; s < steps; s++)
            {
                var sorted = Enumerable.Range(0, rounds).Select(r => m.StepSamplesMs[r * steps + s]).Order().ToArray();
                median[s] = Stats.Percentile(sorted, 0.5);
                low[s] = Stats.Percentile(sorted, 0.25);
                high[s] = Stats.Percentile(sorted, 0.75);
            }
            var colour = Palette[i % Palette.Length];
            if (rounds > 1)
            {
                var band = plot.Add.FillY(xs, low, high);
                band.FillColor = colour.WithAlpha(0.15);
                band.LineWidth = 0;
            }
            var line = plot.Add.ScatterLine(xs, median, colour);
            line.LegendText = $"{Fmt.Role(m.Role)} (first token {Fmt.Ms(m.FirstToken.P50Ms)} ms, per token p50 {Fmt.Ms(m.PerToken.P50Ms)} ms)";
            line.MarkerSize = steps <= 200 ? 4 : 0;
        }
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic { IntegerTicksOnly = true };
        plot.Axes.SetLimitsX(0.5, Math.Max(steps, 1) + 0.5);
        plot.ShowLegend(Alignment.UpperLeft);
        plot.Title($"Latency per decode step (median of {decode.Rounds} rounds, band q25–q75; prompt {decode.PromptTokens} tokens, batch {decode.BatchSize})");
        plot.XLabel("decode step (tokens in the cache = prompt + step)");
        plot.YLabel("ms per token");
        return plot.GetImageBytes(Width, Height, ImageFormat.Png);
    }

    /// <summary>Max abs and RMS error of every compared output on a log scale, with the absolute tolerance as a line.</summary>
    public static byte[] Errors(ValidationReport report)
    {
        var plot = NewPlot();
        var rows = report.Comparisons.SelectMany(c => c.Outputs.Select(o => (c, o))).ToList();
        var ticks = new ScottPlot.TickGenerators.NumericManual();
        var maxBars = new List<Bar>();
        var rmsBars = new List<Bar>();
        double lowest = Math.Log10(Math.Max(report.Options.Atol, ErrorFloor));
        double highest = lowest;
        var logs = rows.Select(r => (Max: Log(r.o.MaxAbsError), Rms: Log(r.o.RmsError))).ToList();
        foreach (double v in logs.SelectMany(l => new[] { l.Max, l.Rms }).OfType<double>())
        {
            lowest = Math.Min(lowest, v);
            highest = Math.Max(highest, v);
        }
        double floor = Math.Floor(lowest) - 1;
        for (int i = 0; i < rows.Count; i++)
        {
            var (c, o) = rows[i];
            maxBars.Add(new Bar { Position = i - 0.18, Value = logs[i].Max ?? floor, ValueBase = floor, Size = 0.34, FillColor = Palette[0] });
            rmsBars.Add(new Bar { Position = i + 0.18, Value = logs[i].Rms ?? floor, ValueBase = floor, Size = 0.34, FillColor = Palette[2] });
            ticks.AddMajor(i, $"{c.Name}\n{o.Name}");
        }
        var maxPlot = plot.Add.Bars(maxBars);
        maxPlot.LegendText = "max abs error";
        var rmsPlot = plot.Add.Bars(rmsBars);
        rmsPlot.LegendText = "RMS error";
        var atol = plot.Add.HorizontalLine(Math.Log10(Math.Max(report.Options.Atol, ErrorFloor)), 2, Palette[1], LinePattern.Dashed);
        atol.LegendText = $"atol {Fmt.Num(report.Options.Atol)}";
        var yTicks = new ScottPlot.TickGenerators.NumericManual();
        int top = (int)Math.Ceiling(highest) + 1;
        for (int e = (int)floor; e <= top; e++)
        {
            yTicks.AddMajor(e, "1e" + e.ToString(CultureInfo.InvariantCulture));
        }
        plot.Axes.Left.TickGenerator = yTicks;
        plot.Axes.Bottom.TickGenerator = ticks;
        plot.Axes.SetLimits(-0.6, Math.Max(rows.Count, 1) - 0.4, floor, top);
        plot.ShowLegend(Alignment.UpperRight);
        plot.Title($"Errors of the merged model per reference and output (log scale; zero drawn at the bottom)");
        plot.YLabel("error");
        return plot.GetImageBytes(Width, Height, ImageFormat.Png);

        static double? Log(double v) => double.IsFinite(v) && v > 0 ? Math.Log10(Math.Max(v, ErrorFloor)) : null;
    }
}
