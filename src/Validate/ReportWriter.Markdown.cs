using System.Text;
using OnnxLora.Validate.Internals;

namespace OnnxLora.Validate;

public static partial class ReportWriter
{
    /// <summary>A Markdown summary for PR comments and CI logs: provider, gates, models, inputs, comparisons, latency.</summary>
    public static string ToMarkdown(ValidationReport report)
    {
        ArgumentNullException.ThrowIfNull(report);
        var sb = new StringBuilder();
        var p = report.Provider;
        sb.AppendLine($"## OnnxLora validation: {(report.Passed ? "✅ PASS" : "❌ FAIL")}");
        sb.AppendLine();
        sb.AppendLine($"Schema `{ValidationReport.SchemaId}` · {report.CreatedUtc.UtcDateTime:yyyy-MM-dd HH:mm:ss} UTC · OnnxLora.Validate {Cell(report.ToolVersion)} · ONNX Runtime {report.OnnxRuntimeVersion}");
        sb.AppendLine();
        sb.AppendLine($"**Provider:** `{p.Used}` (requested {p.Requested.ToString().ToLowerInvariant()}, device {p.DeviceId}{(p.AllowCpuFallback ? ", CPU fallback allowed" : "")})");
        if (p.FallbackReason is not null)
        {
            sb.AppendLine();
            sb.AppendLine($"**Fallback reason:** {Cell(p.FallbackReason)}");
        }
        sb.AppendLine();
        sb.AppendLine($"**Session options (all models):** {SessionText(p.Session)}");
        sb.AppendLine();
        sb.AppendLine($"**Machine:** {Cell(MachineText(report.Machine))}");
        sb.AppendLine();

        sb.AppendLine("### Gates");
        sb.AppendLine();
        Table(sb, ["Gate", "Limit", "Result", "Detail"],
            report.Gates.Select(g => new[] { g.Gate, g.Limit, !g.Enabled ? "– (off)" : g.Passed ? "✅ pass" : "❌ fail", g.Detail }));
        if (report.Failures.Count > 0)
        {
            sb.AppendLine("**Failures:**");
            sb.AppendLine();
            foreach (var f in report.Failures)
            {
                sb.AppendLine($"- `{f.Gate}`: {Cell(f.Message)}");
            }
            sb.AppendLine();
        }

        sb.AppendLine("### Models");
        sb.AppendLine();
        Table(sb, ["Role", "File", "Size (with external data)", "Session create", "RSS growth at load"],
            report.Models.Select(m => new[]
            {
                Fmt.Role(m.Role), $"`{Path.GetFileName(m.Path)}`",
                Fmt.Bytes(m.TotalBytes) + (m.ExternalDataBytes > 0 ? $" ({Fmt.Bytes(m.ExternalDataBytes)} in {m.ExternalDataFiles.Count} external file{(m.ExternalDataFiles.Count == 1 ? "" : "s")})" : ""),
                Fmt.Ms(m.SessionCreateMs) + " ms", Fmt.Bytes(m.RssDeltaBytes),
            }));
        sb.AppendLine($"Peak process memory (VmHWM): {Fmt.Bytes(report.PeakMemoryBytes)}");
        sb.AppendLine();

        sb.AppendLine("### Inputs");
        sb.AppendLine();
        if (report.Inputs.VocabSize is long vocab)
        {
            sb.AppendLine($"Vocabulary {Fmt.Int(vocab)} ({Cell(report.Inputs.VocabSource ?? "")}).");
            sb.AppendLine();
        }
        Table(sb, ["Input", "Type", "Shape", "Source"],
            report.Inputs.Tensors.Select(t => new[] { $"`{t.Name}`", t.ElementType.ReportName(), Fmt.Shape(t.Shape), t.Source }));

        sb.AppendLine("### Comparisons");
        sb.AppendLine();
        sb.AppendLine($"Errors of merged against each reference; tolerance atol {Fmt.Num(report.Options.Atol)} + rtol {Fmt.Num(report.Options.Rtol)}·|ref|; merged vs base is reported, not gated.");
        sb.AppendLine();
        Table(sb, ["Comparison", "Output", "Shape", "Max abs", "Max rel", "RMS", "Cosine", "Beyond tol", "NaN/Inf", "Top-1", "Gated"],
            report.Comparisons.SelectMany(c => c.Outputs.Select(o => new[]
            {
                c.Name, $"`{o.Name}`", Fmt.Shape(o.Shape), Fmt.Err(o.MaxAbsError), Fmt.Err(o.MaxRelError), Fmt.Err(o.RmsError),
                Fmt.Cos(o.CosineSimilarity), Fmt.Int(o.BeyondTolerance), Fmt.Int(o.NonFiniteActual + o.NonFiniteReference),
                o.Top1Agreement is double t ? Fmt.Share(t) : "–", c.Gated ? "yes" : "no",
            })));

        if (report.TaskMetrics is { } task)
        {
            sb.AppendLine("### Task metric");
            sb.AppendLine();
            sb.AppendLine(Cell(TaskIntro(task)));
            sb.AppendLine();
            Table(sb, TaskHeader(task), TaskRows(task));
        }

        sb.AppendLine("### Latency");
        sb.AppendLine();
        if (report.Latency is not LatencyReport l)
        {
            sb.AppendLine("Not measured (runs 0).");
            sb.AppendLine();
        }
        else
        {
            sb.AppendLine($"{l.Rounds} interleaved rounds after {l.Warmup} warm-up runs per model ({(l.Mode == "duration" ? $"duration {Fmt.Num(l.DurationSeconds ?? 0)} s" : "fixed count")}); batch {l.BatchSize}, {Fmt.Int(l.TokensPerRun)} tokens per run. {Cell(l.Binding)}.{SampleGrouping(l)}");
            sb.AppendLine();
            Table(sb, ["Model", "Mean ms", "Std", "Min", "p50", "p90", "p95", "p99", "Max", "Seq/s", "Tokens/s"],
                l.Models.Select(m => new[]
                {
                    Fmt.Role(m.Role), Fmt.Ms(m.Stats.MeanMs), Fmt.Ms(m.Stats.StdMs), Fmt.Ms(m.Stats.MinMs), Fmt.Ms(m.Stats.P50Ms),
                    Fmt.Ms(m.Stats.P90Ms), Fmt.Ms(m.Stats.P95Ms), Fmt.Ms(m.Stats.P99Ms), Fmt.Ms(m.Stats.MaxMs),
                    Fmt.Rate(m.SequencesPerSecond), Fmt.Rate(m.TokensPerSecond),
                }));
            if (l.Ratios.Count > 0)
            {
                Table(sb, ["Ratio (per round)", "Median", "p10", "p90", "IQR (q25–q75)", "Mean", "Pairs"],
                    l.Ratios.Select(r => new[]
                    {
                        r.Name, Fmt.Ratio(r.Median), Fmt.Ratio(r.P10), Fmt.Ratio(r.P90), $"{Fmt.Ratio(r.Q25)}–{Fmt.Ratio(r.Q75)}",
                        Fmt.Ratio(r.Mean), r.Pairs.ToString(System.Globalization.CultureInfo.InvariantCulture),
                    }));
            }
        }

        if (report.Decode is { } decode)
        {
            sb.AppendLine("### Decode (key/value cache)");
            sb.AppendLine();
            sb.AppendLine(Cell(DecodeIntro(decode)));
            sb.AppendLine();
            Table(sb, DecodeHeader, DecodeRows(decode));
            if (decode.Ratios.Count > 0)
            {
                Table(sb, DecodeRatioHeader, DecodeRatioRows(decode));
            }
            if (decode.Comparisons.Count > 0)
            {
                Table(sb, DecodeComparisonHeader, DecodeComparisonRows(decode));
            }
        }

        if (report.Baseline is { } b)
        {
            sb.AppendLine("### Against the baseline");
            sb.AppendLine();
            sb.AppendLine(Cell(BaselineIntro(b)));
            sb.AppendLine();
            Table(sb, BaselineHeader(b), b.Models.Select(BaselineCells));
            foreach (var d in b.Differences)
            {
                sb.AppendLine($"- {(d.Kind == DifferenceKind.Software ? "" : "⚠️ ")}`{d.Field}`: {Cell(d.Found)} (baseline {Cell(d.Baseline)})");
            }
            if (b.Differences.Count > 0)
            {
                sb.AppendLine();
            }
        }

        if (report.Warnings.Count > 0)
        {
            sb.AppendLine("### Warnings");
            sb.AppendLine();
            foreach (string w in report.Warnings)
            {
                sb.AppendLine($"- {Cell(w)}");
            }
            sb.AppendLine();
        }
        return sb.ToString();
    }

    private static string MachineText(MachineReport m) =>
        $"{m.CpuModel}, {m.LogicalCores} logical cores, {Fmt.Bytes(m.MemoryBytes)} memory, {m.Architecture}"
        + (m.Gpu is { } g ? $"; GPU {g.DeviceId}: {g.Name ?? "unknown"}, driver {g.Driver ?? "unknown"}" : "");

    private static string BaselineIntro(BaselineComparison b)
    {
        string level = Fmt.Num(b.Confidence * 100) + "%";
        return $"This run against {b.Path} ({b.CreatedUtc.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss", System.Globalization.CultureInfo.InvariantCulture)} UTC): "
            + $"medians with {level} percentile-bootstrap intervals ({b.Resamples} resamples, seed {b.Seed}), ratio = this run / baseline."
            + " Where both runs timed the same base model with the same ONNX Runtime, the drift-corrected ratio (each model's per-round latency relative to the base model, this run / baseline) is the one judged."
            + (b.MaxRegression is double m ? $" The max-regression gate fails when the lower end of the merged model's judged interval exceeds {Fmt.Ratio(1 + m)}." : "")
            + (b.Differences.Any(d => d.Kind != DifferenceKind.Software) ? " Machines or settings differ (allowed): the ratios include that difference." : "");
    }

    private static string[] BaselineHeader(BaselineComparison b)
    {
        string level = Fmt.Num(b.Confidence * 100) + "% CI";
        return ["Model", "Same model", $"Baseline median ms ({level})", $"This run ({level})", $"Ratio ({level})", $"Relative to base, drift-corrected ({level})", "Change", "Verdict"];
    }

    private static string[] BaselineCells(BaselineLatency m) =>
    [
        Fmt.Role(m.Role), m.SameModel ? "yes" : "no",
        $"{Fmt.Ms(m.Baseline.MedianMs)} ({Fmt.Ms(m.Baseline.LowMs)}–{Fmt.Ms(m.Baseline.HighMs)})",
        $"{Fmt.Ms(m.Current.MedianMs)} ({Fmt.Ms(m.Current.LowMs)}–{Fmt.Ms(m.Current.HighMs)})",
        $"{Fmt.Ratio(m.Ratio.Ratio)} ({Fmt.Ratio(m.Ratio.Low)}–{Fmt.Ratio(m.Ratio.High)})",
        m.RelativeToBase is { } r ? $"{Fmt.Ratio(r.Ratio)} ({Fmt.Ratio(r.Low)}–{Fmt.Ratio(r.High)})" : "–",
        Fmt.Change(m.Judged().Ratio), Fmt.Verdict(m.Verdict),
    ];

    private static string Threads(int n) => n == 0 ? "ORT default" : n.ToString(System.Globalization.CultureInfo.InvariantCulture);

    private static void Table(StringBuilder sb, string[] header, IEnumerable<string[]> rows)
    {
        sb.AppendLine("| " + string.Join(" | ", header.Select(Cell)) + " |");
        sb.AppendLine("|" + string.Concat(header.Select(_ => "---|")));
        foreach (var row in rows)
        {
            sb.AppendLine("| " + string.Join(" | ", row.Select(Cell)) + " |");
        }
        sb.AppendLine();
    }

    private static string Cell(string s) => s.Replace("\r", " ", StringComparison.Ordinal).Replace("\n", " ", StringComparison.Ordinal)
        .Replace("|", "\\|", StringComparison.Ordinal);
}
