using System.Globalization;
using System.Text;
using OnnxLora.Core;
using OnnxLora.Validate.Internals;

namespace OnnxLora.Validate;

/// <summary>Paths of the two comparison report files.</summary>
public sealed record ComparisonPaths(string Markdown, string Html);

public static partial class ReportWriter
{
    public const string ComparisonMarkdownFileName = "compare.md";
    public const string ComparisonHtmlFileName = "compare.html";

    /// <summary>
    /// Writes compare.md and compare.html into <paramref name="directory"/> (created if missing), each atomically.
    /// Without <paramref name="overwrite"/>, fails before writing anything when either exists.
    /// </summary>
    /// <exception cref="OnnxLoraException">A report file exists and <paramref name="overwrite"/> is false (bad input).</exception>
    public static ComparisonPaths WriteComparison(RunComparison comparison, string directory, bool overwrite = false)
    {
        ArgumentNullException.ThrowIfNull(comparison);
        string dir = Path.GetFullPath(directory);
        var paths = new ComparisonPaths(Path.Combine(dir, ComparisonMarkdownFileName), Path.Combine(dir, ComparisonHtmlFileName));
        if (!overwrite)
        {
            foreach (string p in new[] { paths.Markdown, paths.Html })
            {
                if (File.Exists(p) || Directory.Exists(p))
                {
                    throw OnnxLoraException.OutputExists(p);
                }
            }
        }
        Write(paths.Markdown, ToComparisonMarkdown(comparison), overwrite);
        Write(paths.Html, ToComparisonHtml(comparison), overwrite);
        return paths;
    }

    /// <summary>
    /// The comparison as Markdown for PR comments and CI summaries: verdict, method, the latency table (median and
    /// ratio to the baseline with confidence intervals, verdict, output-error columns), output errors, the reports
    /// and the fields in which they differ.
    /// </summary>
    public static string ToComparisonMarkdown(RunComparison comparison)
    {
        ArgumentNullException.ThrowIfNull(comparison);
        var c = comparison;
        var sb = new StringBuilder();
        sb.AppendLine($"## OnnxLora latency comparison: {ComparisonHeadline(c, markdown: true)}");
        sb.AppendLine();
        sb.AppendLine(Cell(ComparisonContext(c)));
        sb.AppendLine();
        sb.AppendLine(Cell(ComparisonMethod(c)));
        sb.AppendLine();
        if (c.MachinesDiffer)
        {
            sb.AppendLine($"> ⚠️ {Cell(MachinesDifferNote)}");
            sb.AppendLine();
        }
        foreach (var r in c.Regressions)
        {
            sb.AppendLine($"- ❌ {Cell(RegressionLine(c, r))}");
        }
        if (c.Regressions.Count > 0)
        {
            sb.AppendLine();
        }

        sb.AppendLine("### Latency");
        sb.AppendLine();
        Table(sb, LatencyHeader(c), c.Latency.Select(l => LatencyCells(c, l, markdown: true)));

        sb.AppendLine("### Output errors");
        sb.AppendLine();
        sb.AppendLine("Errors of each report's merged model against its references, as the validation runs measured them.");
        sb.AppendLine();
        Table(sb, ["Report", "Comparison", "Output", "Max abs", "RMS", "Cosine", "Top-1", "Beyond tol", "Gated"], ErrorRows(c));

        sb.AppendLine("### Reports");
        sb.AppendLine();
        Table(sb, ["#", "Report", "Created (UTC)", "Status", "Merged model (sha256)", "Provider", "ONNX Runtime", "OnnxLora", "Rounds"],
            c.Reports.Select((r, i) => ReportCells(r, i, markdown: true)));

        if (c.Differences.Count > 0)
        {
            sb.AppendLine("### Differences from the baseline");
            sb.AppendLine();
            Table(sb, ["Report", "Field", "Kind", "Baseline", "Found"],
                c.Differences.Select(d => new[] { d.Report, $"`{d.Field}`", DifferenceKindText(d.Kind), d.Baseline, d.Found }));
        }
        return sb.ToString();
    }

    /// <summary>
    /// The comparison as a self-contained HTML page (inline CSS, ScottPlot charts as base64 PNG): the Markdown's
    /// tables plus a chart of the ratios with their intervals and one of each report's latency distribution.
    /// </summary>
    public static string ToComparisonHtml(RunComparison comparison)
    {
        ArgumentNullException.ThrowIfNull(comparison);
        var c = comparison;
        var h = new StringBuilder();
        string headline = ComparisonHeadline(c, markdown: false);
        h.AppendLine("<!DOCTYPE html>");
        h.AppendLine("<html lang=\"en\"><head><meta charset=\"utf-8\">");
        h.AppendLine($"<title>OnnxLora latency comparison: {E(headline)}</title>");
        h.AppendLine($"<style>{Css}</style></head><body><main>");
        string badge = c.Options.MaxRegression is null ? "" : $"<span class=\"badge {(c.Passed ? "pass" : "fail")}\">{(c.Passed ? "PASS" : "REGRESSION")}</span>";
        h.AppendLine($"<h1>OnnxLora latency comparison{badge}</h1>");
        h.AppendLine($"<p class=\"meta\">{E(headline)}</p>");
        h.AppendLine($"<p>{E(ComparisonContext(c))}</p>");
        h.AppendLine($"<p>{E(ComparisonMethod(c))}</p>");
        if (c.MachinesDiffer)
        {
            h.AppendLine($"<div class=\"warn\"><b>Different machines or settings.</b> {E(MachinesDifferNote)}</div>");
        }
        foreach (var r in c.Regressions)
        {
            h.AppendLine($"<div class=\"box\"><b>max-regression</b>: {E(RegressionLine(c, r))}</div>");
        }

        h.AppendLine("<h2>Latency</h2>");
        var header = LatencyHeader(c);
        HtmlTable(h, header, c.Latency.Select(l => LatencyCells(c, l, markdown: false).Select(E).ToArray()
            .Select((cell, i) => i == 9 ? VerdictHtml(l.Verdict, cell) : cell).ToArray()), numeric: [2, 3, 4, 5, 6, 7, 8, 10, 11, 12], wide: true);
        Chart(h, ComparisonCharts.Ratios(c), "Ratio of median latency to the baseline with confidence intervals");
        Chart(h, ComparisonCharts.Distributions(c), "Latency distribution per model and report");
        h.AppendLine($"<p class=\"meta\">Charts name reports by number: {E(string.Join(", ", c.Reports.Select((r, i) => $"#{i} {r.Label}")))}.</p>");

        h.AppendLine("<h2>Output errors</h2>");
        h.AppendLine("<p>Errors of each report's merged model against its references, as the validation runs measured them.</p>");
        HtmlTable(h, ["Report", "Comparison", "Output", "Max abs", "RMS", "Cosine", "Top-1", "Beyond tol", "Gated"],
            ErrorRows(c).Select(row => row.Select(E).ToArray()), numeric: [3, 4, 5, 6, 7]);

        h.AppendLine("<h2>Reports</h2>");
        HtmlTable(h, ["#", "Report", "Created (UTC)", "Status", "Merged model (sha256)", "Provider", "ONNX Runtime", "OnnxLora", "Rounds"],
            c.Reports.Select((r, i) => ReportCells(r, i, markdown: false).Select(E).ToArray()), numeric: [0, 8], wide: true);

        if (c.Differences.Count > 0)
        {
            h.AppendLine("<h2>Differences from the baseline</h2>");
            HtmlTable(h, ["Report", "Field", "Kind", "Baseline", "Found"],
                c.Differences.Select(d => new[] { E(d.Report), Code(d.Field), E(DifferenceKindText(d.Kind)), E(d.Baseline), E(d.Found) }), numeric: []);
        }
        h.AppendLine("</main></body></html>");
        return h.ToString();
    }

    private const string MachinesDifferNote =
        "These reports come from different machines or were run with different settings (compared because different machines were allowed): the ratios include that difference, not only the models'. See the differences at the end.";

    private static string ComparisonHeadline(RunComparison c, bool markdown)
    {
        if (c.Options.MaxRegression is not double m)
        {
            return $"{c.Reports.Count} reports, no regression gate";
        }
        string limit = $"{Fmt.Num(m * 100)}%";
        return c.Passed
            ? $"{(markdown ? "✅ " : "")}no merged model is slower than the baseline beyond {limit}"
            : $"{(markdown ? "❌ " : "")}REGRESSION: {c.Regressions.Count} merged model{(c.Regressions.Count == 1 ? " is" : "s are")} slower than the baseline beyond {limit}";
    }

    private static string ComparisonContext(RunComparison c)
    {
        var b = c.Reports[0].Report;
        var m = b.Machine;
        string gpu = m.Gpu is { } g ? $", GPU {g.Name ?? "unknown"} (driver {g.Driver ?? "unknown"})" : "";
        return $"Baseline: {c.Reports[0].Label}. {c.Reports.Count} reports. Baseline machine: {m.CpuModel}, {m.LogicalCores} logical cores, "
            + $"{Fmt.Bytes(m.MemoryBytes)}{gpu}; {b.Provider.Used}, intra-op threads {Threads(b.Provider.Session.IntraOpThreads)}, "
            + $"inputs {string.Join(", ", b.Inputs.Tensors.Select(t => $"{t.Name} {Fmt.Shape(t.Shape)}"))}.";
    }

    private static string ComparisonMethod(RunComparison c)
    {
        var o = c.Options;
        string level = $"{Fmt.Num(o.Confidence * 100)}%";
        string gate = o.MaxRegression is double m
            ? $" A merged model is a regression (the gate fails) when the lower end of its judged ratio's interval exceeds {Fmt.Ratio(1 + m)} (+{Fmt.Num(m * 100)}%)."
            : " No regression gate (--max-regression not given).";
        return $"Median of each model's timed runs with a {level} percentile-bootstrap confidence interval ({o.Resamples.ToString("N0", CultureInfo.InvariantCulture)} resamples, "
            + $"seed {o.Seed} for the baseline, +1 per report); ratio = median / the baseline's median for the same model role, with a {level} interval from the same resamples. "
            + "Where a report and the baseline timed the same base model (same hash) with the same ONNX Runtime, the drift-corrected ratio is shown too and is the one judged: "
            + "the median of the model's per-round latency relative to the base model in the same interleaved round, divided by the baseline's; a machine that is slower as a whole in one run cancels out."
            + gate;
    }

    private static string RegressionLine(RunComparison c, RunLatency r)
    {
        string level = $"{Fmt.Num(c.Options.Confidence * 100)}% CI";
        var j = r.Judged()!;
        string which = r.RelativeToBase is null ? "ratio" : "drift-corrected ratio (relative to the base model)";
        return $"{r.Label}: merged median {Fmt.Ms(r.Median.MedianMs)} ms, {which} {Fmt.Ratio(j.Ratio)} ({level} {Fmt.Ratio(j.Low)}–{Fmt.Ratio(j.High)}): "
            + $"even the lower end is more than {Fmt.Num(c.Options.MaxRegression!.Value * 100)}% slower than the baseline.";
    }

    private static string[] LatencyHeader(RunComparison c)
    {
        string level = $"{Fmt.Num(c.Options.Confidence * 100)}% CI";
        return ["Model", "Report", "Runs", $"Median ms ({level})", "p90 ms", "Tokens/s", $"Ratio to baseline ({level})",
            $"Relative to base, drift-corrected ({level})", "Change", "Verdict", "Max abs vs unmerged", "Top-1 vs unmerged", "Max abs vs eager"];
    }

    private static string[] LatencyCells(RunComparison c, RunLatency l, bool markdown)
    {
        var report = c.Reports[l.Report].Report;
        bool merged = l.Role == ModelRole.Merged;
        string Err(ModelRole reference) =>
            merged && report.Comparisons.FirstOrDefault(x => x.Reference == reference) is { Outputs.Count: > 0 } x
                ? Fmt.Err(x.Outputs.Max(o => o.MaxAbsError)) : "–";
        string top1 = merged && report.Comparisons.FirstOrDefault(x => x.Reference == ModelRole.Unmerged)?.Outputs
            .FirstOrDefault(o => o.Top1Agreement is not null)?.Top1Agreement is double t ? Fmt.Share(t) : "–";
        string verdict = Fmt.Verdict(l.Verdict);
        if (markdown)
        {
            verdict = l.Verdict switch
            {
                LatencyVerdict.Regression => "❌ " + verdict,
                LatencyVerdict.Slower => "⚠️ " + verdict,
                _ => verdict,
            };
        }
        return
        [
            Fmt.Role(l.Role), l.Label + (l.Report == 0 ? " (baseline)" : ""), l.Median.Samples.ToString(CultureInfo.InvariantCulture),
            $"{Fmt.Ms(l.Median.MedianMs)} ({Fmt.Ms(l.Median.LowMs)}–{Fmt.Ms(l.Median.HighMs)})",
            Fmt.Ms(l.P90Ms), Fmt.Rate(l.TokensPerSecond),
            l.Ratio is { } r ? $"{Fmt.Ratio(r.Ratio)} ({Fmt.Ratio(r.Low)}–{Fmt.Ratio(r.High)})" : l.Report == 0 ? "1" : "–",
            l.RelativeToBase is { } d ? $"{Fmt.Ratio(d.Ratio)} ({Fmt.Ratio(d.Low)}–{Fmt.Ratio(d.High)})" : "–",
            l.Judged() is { } q ? Fmt.Change(q.Ratio) : "–",
            verdict, Err(ModelRole.Unmerged), top1, Err(ModelRole.Eager),
        ];
    }

    private static IEnumerable<string[]> ErrorRows(RunComparison c) =>
        c.Reports.SelectMany(r => r.Report.Comparisons.SelectMany(x => x.Outputs.Select(o => new[]
        {
            r.Label, x.Name, o.Name, Fmt.Err(o.MaxAbsError), Fmt.Err(o.RmsError), Fmt.Cos(o.CosineSimilarity),
            o.Top1Agreement is double t ? Fmt.Share(t) : "–", Fmt.Int(o.BeyondTolerance), x.Gated ? "yes" : "no",
        })));

    private static string[] ReportCells(ComparedReport r, int index, bool markdown)
    {
        var v = r.Report;
        string hash = v.Models.FirstOrDefault(m => m.Role == ModelRole.Merged)?.ContentSha256 is { Length: >= 12 } h ? h[..12] : "–";
        return
        [
            index.ToString(CultureInfo.InvariantCulture), r.Label + (index == 0 ? " (baseline)" : ""),
            v.CreatedUtc.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture),
            markdown ? (v.Passed ? "✅ pass" : "❌ fail") : Fmt.Status(v.Status),
            markdown ? $"`{hash}`" : hash, v.Provider.Used, v.OnnxRuntimeVersion, v.ToolVersion,
            (v.Latency?.Rounds ?? 0).ToString(CultureInfo.InvariantCulture),
        ];
    }

    private static string DifferenceKindText(DifferenceKind kind) => kind switch
    {
        DifferenceKind.Machine => "machine",
        DifferenceKind.Settings => "settings",
        _ => "software (allowed)",
    };

    private static string VerdictHtml(LatencyVerdict verdict, string encoded) => verdict switch
    {
        LatencyVerdict.Regression => $"<span class=\"bad\">{encoded}</span>",
        LatencyVerdict.Faster => $"<span class=\"ok\">{encoded}</span>",
        _ => encoded,
    };
}
