using System.Diagnostics;
using System.Globalization;
using System.Text;
using OnnxLora.Validate;

namespace OnnxLora.ValidateBench;

/// <summary>
/// How often the cross-run regression gate raises a false alarm on real runs, and whether it sees a planted slowdown
/// in real noise. Writes the synthetic models once, then validates them <c>2 × pairs</c> times, each run in a fresh
/// process (as two CI jobs would), and compares run 2k with run 2k + 1 at --max-regression 5%:
/// <list type="bullet">
/// <item>false alarm: the merged model of the second run is a regression against the first (same files, same machine),
/// as the gate judges it (drift-corrected, relative to the base model) and as the raw ratio of medians would;</item>
/// <item>planted: the second run's merged samples multiplied by 1.10 (the base model's left as measured) must be a regression;</item>
/// <item>self: the first run compared with itself must not be one.</item>
/// </list>
/// Usage: <c>dotnet run -c Release --project bench/ValidateBench -- compare-noise OUTDIR [pairs 20] [runs 60] [vocab 8000] [hidden 256] [layers 4] [seq 64]</c>.
/// </summary>
internal static class CompareNoise
{
    public static int Run(string[] args)
    {
        string outDir = Path.GetFullPath(args.Length > 0 ? args[0] : "out/compare-noise");
        int pairs = Arg(args, 1, 20), runs = Arg(args, 2, 60), vocab = Arg(args, 3, 8000), hidden = Arg(args, 4, 256), layers = Arg(args, 5, 4), seq = Arg(args, 6, 64);
        Directory.CreateDirectory(outDir);
        var lm = new SyntheticLm(vocab, hidden, layers, rank: 16, seed: 42);
        lm.Initialise();
        foreach (var kind in Enum.GetValues<SyntheticLm.Kind>())
        {
            lm.Write(Path.Combine(outDir, $"{kind.ToString().ToLowerInvariant()}.onnx"), kind);
        }

        var clock = Stopwatch.StartNew();
        var reports = new List<string>();
        for (int i = 0; i < 2 * pairs; i++)
        {
            string report = Path.Combine(outDir, $"run{i:D2}");
            if (Environment.GetEnvironmentVariable("ONNXLORA_BENCH_REUSE") != "1" || !File.Exists(Path.Combine(report, ReportWriter.JsonFileName)))
            {
                RunChild(outDir, report, runs, seq);
            }
            reports.Add(Path.Combine(report, ReportWriter.JsonFileName));
            Console.Error.WriteLine($"run {i + 1}/{2 * pairs} done ({clock.Elapsed.TotalSeconds:F0} s)");
        }

        var gate = RunComparisonOptions.Default with { MaxRegression = 0.05 };
        var table = new StringBuilder();
        table.AppendLine("| Pair | A: merged median ms (95% CI) | B: merged median ms | B / A ratio (95% CI) | B / A relative to base (95% CI) | Verdict | B×1.10 / A ratio | B×1.10 / A relative to base | Verdict | A / A verdict |");
        table.AppendLine("|---|---|---|---|---|---|---|---|---|---|");
        int falseAlarms = 0, rawFalseAlarms = 0, detected = 0, rawDetected = 0, selfAlarms = 0;
        for (int p = 0; p < pairs; p++)
        {
            var a = new ComparedReport($"run{2 * p:D2}", reports[2 * p], ValidationReport.Load(reports[2 * p]));
            var b = new ComparedReport($"run{2 * p + 1:D2}", reports[2 * p + 1], ValidationReport.Load(reports[2 * p + 1]));
            var slowed = b with { Label = b.Label + "×1.10", Report = Slowed(b.Report, 1.10) };
            var pair = RunComparer.Compare([a, b], gate);
            var same = Merged(pair);
            var planted = Merged(RunComparer.Compare([a, slowed], gate));
            var self = Merged(RunComparer.Compare([a, a with { Label = a.Label + " again" }], gate));
            var first = pair.Latency.Single(l => l.Report == 0 && l.Role == ModelRole.Merged);
            falseAlarms += same.Verdict == LatencyVerdict.Regression ? 1 : 0;
            rawFalseAlarms += same.Ratio!.Low > 1.05 ? 1 : 0;
            detected += planted.Verdict == LatencyVerdict.Regression ? 1 : 0;
            rawDetected += planted.Ratio!.Low > 1.05 ? 1 : 0;
            selfAlarms += self.Verdict == LatencyVerdict.Regression ? 1 : 0;
            table.AppendLine($"| {p + 1} | {Median(first)} | {Median(same)} | {Ratio(same.Ratio)} | {Ratio(same.RelativeToBase)} | {Word(same)} "
                + $"| {Ratio(planted.Ratio)} | {Ratio(planted.RelativeToBase)} | {Word(planted)} | {Word(self)} |");
        }
        string load = File.Exists("/proc/loadavg") ? File.ReadAllText("/proc/loadavg").Trim() : "unknown";
        var summary = new StringBuilder();
        summary.AppendLine($"{pairs} pairs of separate validate runs ({runs} interleaved rounds each, CPU, 1 intra-op thread, seq {seq}; synthetic LM vocab {vocab}, hidden {hidden}, {layers} layers), --max-regression 5%:");
        summary.AppendLine();
        summary.AppendLine($"- false alarms, B / A flagged: **{falseAlarms} of {pairs}** as gated (drift-corrected ratio); {rawFalseAlarms} of {pairs} had the raw ratio of medians been judged");
        summary.AppendLine($"- planted 10% slowdown of the merged model, B×1.10 / A flagged: **{detected} of {pairs}** as gated; {rawDetected} of {pairs} on the raw ratio");
        summary.AppendLine($"- a report against itself flagged: {selfAlarms} of {pairs}");
        summary.AppendLine($"- wall time {clock.Elapsed.TotalMinutes:F1} min; load average at the end: {load}");
        summary.AppendLine();
        summary.Append(table);
        File.WriteAllText(Path.Combine(outDir, "compare-noise.md"), summary.ToString());
        Console.WriteLine(summary);
        return falseAlarms == 0 && detected == pairs && selfAlarms == 0 ? 0 : 1;
    }

    /// <summary>One validate run of the three models in a child process (this program's "validate-once" mode).</summary>
    private static void RunChild(string models, string report, int runs, int seq)
    {
        string self = Environment.ProcessPath!;
        var psi = new ProcessStartInfo(self) { RedirectStandardOutput = true, RedirectStandardError = true };
        if (Path.GetFileNameWithoutExtension(self) == "dotnet")
        {
            psi.ArgumentList.Add(typeof(CompareNoise).Assembly.Location);
        }
        foreach (string a in new[] { "validate-once", models, report, runs.ToString(CultureInfo.InvariantCulture), seq.ToString(CultureInfo.InvariantCulture) })
        {
            psi.ArgumentList.Add(a);
        }
        using var p = Process.Start(psi)!;
        string stderr = p.StandardError.ReadToEnd();
        p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0)
        {
            throw new InvalidOperationException($"validate-once exited with {p.ExitCode}: {stderr}");
        }
    }

    /// <summary>The child: validates merged.onnx against unmerged.onnx and base.onnx in <paramref name="args"/>[0], writes the reports.</summary>
    public static int ValidateOnce(string[] args)
    {
        string models = args[0];
        var request = new ValidationRequest(Path.Combine(models, "merged.onnx"), Path.Combine(models, "unmerged.onnx")) { BasePath = Path.Combine(models, "base.onnx") };
        var report = Validator.Run(request, ValidationOptions.Default with
        {
            Device = ExecutionDevice.Cpu,
            Batch = 1,
            Sequence = int.Parse(args[3], CultureInfo.InvariantCulture),
            Warmup = 5,
            Runs = int.Parse(args[2], CultureInfo.InvariantCulture),
            IntraOpThreads = 1,
            InterOpThreads = 1,
        });
        ReportWriter.WriteAll(report, args[1], overwrite: true);
        return 0;
    }

    private static ValidationReport Slowed(ValidationReport r, double factor) => r with
    {
        Latency = r.Latency! with
        {
            Models = [.. r.Latency.Models.Select(m => m.Role == ModelRole.Merged ? m with { SamplesMs = [.. m.SamplesMs.Select(x => x * factor)] } : m)],
        },
    };

    private static RunLatency Merged(RunComparison c) => c.Latency.Single(l => l.Report == 1 && l.Role == ModelRole.Merged);

    private static string Median(RunLatency l) => $"{l.Median.MedianMs:F3} ({l.Median.LowMs:F3}–{l.Median.HighMs:F3})";

    private static string Ratio(RatioEstimate? r) => r is null ? "–" : $"{r.Ratio:F3} ({r.Low:F3}–{r.High:F3})";

    private static string Word(RunLatency l) => l.Verdict switch
    {
        LatencyVerdict.Regression => "**regression**",
        LatencyVerdict.NoSignificantChange => "no change",
        _ => l.Verdict.ToString().ToLowerInvariant(),
    };

    private static int Arg(string[] args, int i, int fallback) => args.Length > i ? int.Parse(args[i], CultureInfo.InvariantCulture) : fallback;
}
