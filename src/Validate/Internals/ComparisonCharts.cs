using ScottPlot;

namespace OnnxLora.Validate.Internals;

/// <summary>The comparison report's charts, drawn by ScottPlot and returned as PNG bytes (the sizes of <see cref="ReportCharts"/>).</summary>
internal static class ComparisonCharts
{
    private static Color[] Palette => ReportCharts.Palette;

    private static Plot NewPlot() => ReportCharts.NewPlot();

    /// <summary>
    /// Each report's judged ratio to the baseline per model role (drift-corrected where there is a control, marked
    /// "vs base"): a dot at the ratio and a bar over its interval, red when it is a regression, with lines at 1 (no
    /// change) and at 1 + MaxRegression.
    /// </summary>
    public static byte[] Ratios(RunComparison c)
    {
        var plot = NewPlot();
        var ticks = new ScottPlot.TickGenerators.NumericManual();
        var rows = c.Latency.Where(l => l.Judged() is not null).ToList();
        double low = 1, high = 1 + (c.Options.MaxRegression ?? 0);
        for (int i = 0; i < rows.Count; i++)
        {
            var l = rows[i];
            var r = l.Judged()!;
            var color = l.Verdict == LatencyVerdict.Regression ? Color.FromHex("#c62828") : Palette[l.Report % Palette.Length];
            var bar = plot.Add.Line(i, r.Low, i, r.High);
            bar.LineWidth = 4;
            bar.LineColor = color;
            var dot = plot.Add.Marker(i, r.Ratio, MarkerShape.FilledCircle, 10, color);
            dot.LegendText = "";
            ticks.AddMajor(i, $"{Fmt.Role(l.Role)}{(l.RelativeToBase is null ? "" : " vs base")}\nreport #{l.Report}");
            low = Math.Min(low, r.Low);
            high = Math.Max(high, r.High);
        }
        var one = plot.Add.HorizontalLine(1, 1.5f, Colors.Gray, LinePattern.Solid);
        one.LegendText = "no change";
        if (c.Options.MaxRegression is double m)
        {
            var limit = plot.Add.HorizontalLine(1 + m, 2, Color.FromHex("#c62828"), LinePattern.Dashed);
            limit.LegendText = $"tolerated slowdown (+{Fmt.Num(m * 100)}%)";
        }
        double pad = Math.Max((high - low) * 0.15, 0.01);
        plot.Axes.Bottom.TickGenerator = ticks;
        plot.Axes.SetLimits(-0.6, Math.Max(rows.Count, 1) - 0.4, low - pad, high + pad);
        plot.ShowLegend(Alignment.UpperRight);
        plot.Title($"Latency relative to the baseline, as judged ({Fmt.Num(c.Options.Confidence * 100)}% bootstrap interval)");
        plot.YLabel("ratio to baseline");
        return plot.GetImageBytes(ReportCharts.Width, ReportCharts.Height, ImageFormat.Png);
    }

    /// <summary>Box plot of each report's latency per model role: box q25–q75, line at the median, whiskers p10–p90.</summary>
    public static byte[] Distributions(RunComparison c)
    {
        var plot = NewPlot();
        var ticks = new ScottPlot.TickGenerators.NumericManual();
        int position = 0;
        foreach (var l in c.Latency)
        {
            var samples = c.Reports[l.Report].Report.Latency!.Models.First(m => m.Role == l.Role).SamplesMs.Order().ToArray();
            var color = Palette[l.Report % Palette.Length];
            var box = new Box
            {
                Position = position,
                BoxMin = Stats.Percentile(samples, 0.25),
                BoxMax = Stats.Percentile(samples, 0.75),
                BoxMiddle = Stats.Percentile(samples, 0.5),
                WhiskerMin = Stats.Percentile(samples, 0.10),
                WhiskerMax = Stats.Percentile(samples, 0.90),
                Width = 0.6,
            };
            // A BoxPlot styles all its boxes alike, overriding each Box's colours: colour the plottable.
            var added = plot.Add.Box(box);
            added.FillColor = color.WithAlpha(0.5);
            added.LineColor = color;
            ticks.AddMajor(position, $"{Fmt.Role(l.Role)}\n#{l.Report}");
            position++;
        }
        plot.Axes.Bottom.TickGenerator = ticks;
        plot.Axes.SetLimitsX(-0.6, Math.Max(position, 1) - 0.4);
        plot.Title("Latency per model and report # (box q25–q75, whiskers p10–p90; colour: report)");
        plot.YLabel("ms per run");
        return plot.GetImageBytes(ReportCharts.Width, ReportCharts.Height, ImageFormat.Png);
    }
}
