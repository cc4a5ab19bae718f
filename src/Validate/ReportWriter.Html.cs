using System.Net;
using System.Text;
using OnnxLora.Validate.Internals;

namespace OnnxLora.Validate;

public static partial class ReportWriter
{
    private const string Css = """
        body{font-family:"DejaVu Sans",Helvetica,Arial,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
        main{max-width:1100px;margin:0 auto;padding:24px 32px 48px;background:#fff;box-shadow:0 0 12px rgba(0,0,0,.06)}
        h1{font-size:26px;margin:0 0 6px}h2{font-size:19px;margin:30px 0 10px;border-bottom:1px solid #e3e6eb;padding-bottom:4px}
        .meta{color:#5b6475;font-size:13px}
        .badge{display:inline-block;padding:3px 12px;border-radius:12px;font-weight:bold;color:#fff;margin-left:10px;font-size:18px;vertical-align:middle}
        .pass{background:#1e8a3c}.fail{background:#c62828}.off{color:#8a93a3}
        .ok{color:#1e8a3c;font-weight:bold}.bad{color:#c62828;font-weight:bold}
        table{border-collapse:collapse;width:100%;font-size:13px;margin:8px 0 14px}
        th,td{border:1px solid #dde1e7;padding:5px 8px;text-align:left;vertical-align:top}
        th{background:#eef1f5}td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
        td{overflow-wrap:anywhere}table.wide{font-size:11.5px}table.wide th,table.wide td{padding:4px 5px}table.wide td:first-child,table.wide span{white-space:nowrap;overflow-wrap:normal}
        code{font-family:"DejaVu Sans Mono",monospace;font-size:12px;background:#f1f3f6;padding:1px 4px;border-radius:3px}
        .box{border-left:4px solid #c62828;background:#fdecea;padding:8px 12px;margin:8px 0;font-size:13px}
        .warn{border-left:4px solid #e0a800;background:#fff8e1;padding:8px 12px;margin:8px 0;font-size:13px}
        img.chart{display:block;width:100%;box-sizing:border-box;margin:10px 0;border:1px solid #e3e6eb}
        """;

    /// <summary>
    /// A self-contained HTML page (inline CSS, charts as base64 PNG drawn by ScottPlot, no external resources):
    /// status, provider, gates, models, inputs, comparisons with an error chart, latency with distribution and
    /// per-round charts, decode latency with a per-step chart.
    /// </summary>
    public static string ToHtml(ValidationReport report)
    {
        ArgumentNullException.ThrowIfNull(report);
        var h = new StringBuilder();
        var p = report.Provider;
        h.AppendLine("<!DOCTYPE html>");
        h.AppendLine("<html lang=\"en\"><head><meta charset=\"utf-8\">");
        h.AppendLine($"<title>OnnxLora validation: {Fmt.Status(report.Status)}</title>");
        h.AppendLine($"<style>{Css}</style></head><body><main>");
        h.AppendLine($"<h1>OnnxLora validation<span class=\"badge {(report.Passed ? "pass" : "fail")}\">{Fmt.Status(report.Status)}</span></h1>");
        h.AppendLine($"<p class=\"meta\">{E(report.CreatedUtc.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss", System.Globalization.CultureInfo.InvariantCulture))} UTC · schema <code>{ValidationReport.SchemaId}</code> · OnnxLora.Validate {E(report.ToolVersion)} · ONNX Runtime {E(report.OnnxRuntimeVersion)}</p>");
        h.AppendLine($"<p><b>Provider:</b> <code>{E(p.Used)}</code> (requested {E(p.Requested.ToString().ToLowerInvariant())}, device {p.DeviceId}{(p.AllowCpuFallback ? ", CPU fallback allowed" : "")}). "
            + $"<b>Session options (all models):</b> {E(SessionText(p.Session))}.</p>");
        h.AppendLine($"<p><b>Machine:</b> {E(MachineText(report.Machine))}.</p>");
        if (p.FallbackReason is not null)
        {
            h.AppendLine($"<div class=\"warn\"><b>Fallback reason:</b> {E(p.FallbackReason)}</div>");
        }

        h.AppendLine("<h2>Gates</h2>");
        HtmlTable(h, ["Gate", "Limit", "Result", "Detail"], report.Gates.Select(g => new[]
        {
            Code(g.Gate), E(g.Limit),
            !g.Enabled ? "<span class=\"off\">off</span>" : g.Passed ? "<span class=\"ok\">pass</span>" : "<span class=\"bad\">fail</span>",
            E(g.Detail),
        }), numeric: []);
        foreach (var f in report.Failures)
        {
            h.AppendLine($"<div class=\"box\"><b>{E(f.Gate)}</b>: {E(f.Message)}</div>");
        }

        h.AppendLine("<h2>Models</h2>");
        HtmlTable(h, ["Role", "File", "Size (with external data)", "External data", "Session create", "RSS growth at load"], report.Models.Select(m => new[]
        {
            E(Fmt.Role(m.Role)), $"<code title=\"{E(m.Path)}\">{E(Path.GetFileName(m.Path))}</code>", E(Fmt.Bytes(m.TotalBytes)),
            m.ExternalDataFiles.Count == 0 ? "–" : E($"{Fmt.Bytes(m.ExternalDataBytes)} in {string.Join(", ", m.ExternalDataFiles)}"),
            E(Fmt.Ms(m.SessionCreateMs) + " ms"), E(Fmt.Bytes(m.RssDeltaBytes)),
        }), numeric: [2, 4, 5]);
        h.AppendLine($"<p>Peak process memory (VmHWM): <b>{E(Fmt.Bytes(report.PeakMemoryBytes))}</b></p>");

        h.AppendLine("<h2>Inputs</h2>");
        if (report.Inputs.VocabSize is long vocab)
        {
            h.AppendLine($"<p>Vocabulary {E(Fmt.Int(vocab))} ({E(report.Inputs.VocabSource ?? "")}).</p>");
        }
        HtmlTable(h, ["Input", "Type", "Shape", "Source"], report.Inputs.Tensors.Select(t => new[]
        {
            Code(t.Name), E(t.ElementType.ReportName()), E(Fmt.Shape(t.Shape)), E(t.Source),
        }), numeric: []);

        h.AppendLine("<h2>Comparisons</h2>");
        h.AppendLine($"<p>Errors of the merged model against each reference, in double precision; tolerance atol {E(Fmt.Num(report.Options.Atol))} + rtol {E(Fmt.Num(report.Options.Rtol))}·|ref|. Merged vs base is reported, not gated.</p>");
        HtmlTable(h, ["Comparison", "Output", "Shape", "Max abs", "Max rel", "RMS", "Cosine", "Beyond tol", "NaN/Inf", "Top-1", "Gated"],
            report.Comparisons.SelectMany(c => c.Outputs.Select(o => new[]
            {
                E(c.Name), Code(o.Name), E(Fmt.Shape(o.Shape)), E(Fmt.Err(o.MaxAbsError)), E(Fmt.Err(o.MaxRelError)), E(Fmt.Err(o.RmsError)),
                E(Fmt.Cos(o.CosineSimilarity)),
                o.BeyondTolerance > 0 && c.Gated ? $"<span class=\"bad\">{E(Fmt.Int(o.BeyondTolerance))}</span>" : E(Fmt.Int(o.BeyondTolerance)),
                o.NonFiniteActual + o.NonFiniteReference > 0 ? $"<span class=\"bad\">{E(Fmt.Int(o.NonFiniteActual + o.NonFiniteReference))}</span>" : "0",
                o.Top1Agreement is double t ? E(Fmt.Share(t)) : "–", c.Gated ? "yes" : "no",
            })), numeric: [3, 4, 5, 6, 7, 8, 9]);
        if (report.Comparisons.Any(c => c.Outputs.Count > 0))
        {
            Chart(h, ReportCharts.Errors(report), "Error metrics per comparison and output");
        }

        if (report.TaskMetrics is { } task)
        {
            h.AppendLine("<h2>Task metric</h2>");
            h.AppendLine($"<p>{E(TaskIntro(task))}</p>");
            HtmlTable(h, TaskHeader(task), TaskRows(task).Select(r => r.Select(E).ToArray()), numeric: [1, 2]);
        }

        h.AppendLine("<h2>Latency</h2>");
        if (report.Latency is not LatencyReport l)
        {
            h.AppendLine("<p>Not measured (runs 0).</p>");
        }
        else
        {
            h.AppendLine($"<p>{l.Rounds} interleaved rounds after {l.Warmup} warm-up runs per model ({(l.Mode == "duration" ? $"duration {E(Fmt.Num(l.DurationSeconds ?? 0))} s" : "fixed count")}); batch {l.BatchSize}, {E(Fmt.Int(l.TokensPerRun))} tokens per run. {E(l.Binding)}.{E(SampleGrouping(l))}</p>");
            HtmlTable(h, ["Model", "Mean ms", "Std", "Min", "p50", "p90", "p95", "p99", "Max", "Seq/s", "Tokens/s"], l.Models.Select(m => new[]
            {
                E(Fmt.Role(m.Role)), E(Fmt.Ms(m.Stats.MeanMs)), E(Fmt.Ms(m.Stats.StdMs)), E(Fmt.Ms(m.Stats.MinMs)), E(Fmt.Ms(m.Stats.P50Ms)),
                E(Fmt.Ms(m.Stats.P90Ms)), E(Fmt.Ms(m.Stats.P95Ms)), E(Fmt.Ms(m.Stats.P99Ms)), E(Fmt.Ms(m.Stats.MaxMs)),
                E(Fmt.Rate(m.SequencesPerSecond)), E(Fmt.Rate(m.TokensPerSecond)),
            }), numeric: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
            if (l.Ratios.Count > 0)
            {
                HtmlTable(h, ["Ratio (per round)", "Median", "p10", "p90", "IQR (q25–q75)", "Mean", "Pairs"], l.Ratios.Select(r => new[]
                {
                    E(r.Name), E(Fmt.Ratio(r.Median)), E(Fmt.Ratio(r.P10)), E(Fmt.Ratio(r.P90)), E($"{Fmt.Ratio(r.Q25)}–{Fmt.Ratio(r.Q75)}"),
                    E(Fmt.Ratio(r.Mean)), r.Pairs.ToString(System.Globalization.CultureInfo.InvariantCulture),
                }), numeric: [1, 2, 3, 4, 5, 6]);
            }
            if (l.Rounds > 0)
            {
                Chart(h, ReportCharts.LatencyBoxes(l), "Latency distribution per model");
                Chart(h, ReportCharts.LatencyTimeline(l), "Latency per interleaved round");
            }
        }

        if (report.Decode is { } decode)
        {
            h.AppendLine("<h2>Decode (key/value cache)</h2>");
            h.AppendLine($"<p>{E(DecodeIntro(decode))}</p>");
            HtmlTable(h, DecodeHeader, DecodeRows(decode).Select(r => r.Select(E).ToArray()), numeric: [1, 2, 3, 4, 5, 6, 7, 8]);
            if (decode.Ratios.Count > 0)
            {
                HtmlTable(h, DecodeRatioHeader, DecodeRatioRows(decode).Select(r => r.Select(E).ToArray()), numeric: [1, 2, 3, 4]);
            }
            if (decode.Comparisons.Count > 0)
            {
                HtmlTable(h, DecodeComparisonHeader, DecodeComparisonRows(decode).Select(r => r.Select(E).ToArray()), numeric: [1, 2, 3, 4, 5, 6, 7, 8]);
            }
            if (decode.Rounds > 0 && decode.NewTokens > 1)
            {
                Chart(h, ReportCharts.DecodeSteps(decode), "Latency per decode step");
            }
        }

        if (report.Baseline is { } b)
        {
            h.AppendLine("<h2>Against the baseline</h2>");
            h.AppendLine($"<p>{E(BaselineIntro(b))}</p>");
            HtmlTable(h, BaselineHeader(b), b.Models.Select(m => BaselineCells(m).Select(E).ToArray()), numeric: [2, 3, 4, 5, 6]);
            foreach (var d in b.Differences)
            {
                h.AppendLine($"<div class=\"{(d.Kind == DifferenceKind.Software ? "meta" : "warn")}\">{Code(d.Field)}: {E(d.Found)} (baseline {E(d.Baseline)})</div>");
            }
        }

        if (report.Warnings.Count > 0)
        {
            h.AppendLine("<h2>Warnings</h2>");
            foreach (string w in report.Warnings)
            {
                h.AppendLine($"<div class=\"warn\">{E(w)}</div>");
            }
        }
        h.AppendLine("</main></body></html>");
        return h.ToString();
    }

    private static string E(string s) => WebUtility.HtmlEncode(s);

    private static string Code(string s) => $"<code>{E(s)}</code>";

    private static void Chart(StringBuilder h, byte[] png, string alt) =>
        h.AppendLine($"<img class=\"chart\" alt=\"{E(alt)}\" src=\"data:image/png;base64,{Convert.ToBase64String(png)}\">");

    private static void HtmlTable(StringBuilder h, string[] header, IEnumerable<string[]> rows, int[] numeric, bool wide = false)
    {
        h.Append(wide ? "<table class=\"wide\"><thead><tr>" : "<table><thead><tr>");
        foreach (string c in header)
        {
            h.Append("<th>").Append(E(c)).Append("</th>");
        }
        h.AppendLine("</tr></thead><tbody>");
        foreach (var row in rows)
        {
            h.Append("<tr>");
            for (int i = 0; i < row.Length; i++)
            {
                h.Append(numeric.Contains(i) ? "<td class=\"n\">" : "<td>").Append(row[i]).Append("</td>");
            }
            h.AppendLine("</tr>");
        }
        h.AppendLine("</tbody></table>");
    }
}
