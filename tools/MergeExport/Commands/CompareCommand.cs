using System.CommandLine;
using System.Globalization;
using OnnxLora.MergeExport.Internals;
using OnnxLora.Validate;

namespace OnnxLora.MergeExport.Commands;

/// <summary>
/// <c>compare</c>: compares the latency of several validation reports (validation.json) with the first, the baseline,
/// and writes compare.md and compare.html: per model and report the median latency and its ratio to the baseline with
/// bootstrap confidence intervals, and the output errors each run measured. Reports from different machines or
/// settings are refused (exit 2, naming the file and field) unless --allow-different-machines. Exit code 1 when
/// --max-regression is given and a merged model is significantly slower than the baseline beyond it.
/// </summary>
internal sealed class CompareCommand : CliCommand
{
    private readonly Argument<string[]> _reports = new("reports")
    {
        Description = "validation.json files (written by validate or run); the first is the baseline.",
        Arity = ArgumentArity.OneOrMore,
    };

    private readonly Option<string> _out = new("--out") { Description = "Folder for compare.md and compare.html.", DefaultValueFactory = _ => "compare-report" };

    private readonly PercentOption _maxRegression = new("--max-regression",
        "Fail (exit 1) when a merged model is significantly slower than the baseline's by more than this, e.g. 5% (the lower end of the 95% bootstrap interval of the median ratio must exceed it).");

    private readonly Option<bool> _allowDifferentMachines = new("--allow-different-machines")
    {
        Description = "Compare reports from different machines or with different settings (the report says so and lists the differences).",
    };

    public CompareCommand(CliContext context)
        : base("compare", "Compare the latency of validation reports across runs (the first is the baseline): Markdown and HTML report, regression gate.", context)
    {
        _reports.Validators.Add(result =>
        {
            if (result.Tokens.Count < 2)
            {
                result.AddError("compare needs at least two validation reports: the baseline first, then the reports to compare with it.");
            }
        });
        Arguments.Add(_reports);
        Options.Add(_out);
        Options.Add(_maxRegression);
        Options.Add(_allowDifferentMachines);
    }

    /// <summary>A verdict as the CLI's JSON spells it ("no-significant-change", "regression").</summary>
    public static string VerdictWord(LatencyVerdict verdict) => verdict switch
    {
        LatencyVerdict.Baseline => "baseline",
        LatencyVerdict.NoBaseline => "no-baseline",
        LatencyVerdict.NoSignificantChange => "no-significant-change",
        LatencyVerdict.Faster => "faster",
        LatencyVerdict.Slower => "slower",
        _ => "regression",
    };

    protected override int Execute(ParseResult parse)
    {
        string[] files = parse.GetValue(_reports)!;
        var labels = Labels(files);
        var reports = new List<ComparedReport>();
        for (int i = 0; i < files.Length; i++)
        {
            Context.CancellationToken.ThrowIfCancellationRequested();
            string full = Path.GetFullPath(files[i]);
            reports.Add(new ComparedReport(labels[i], full, ValidationReport.Load(full)));
        }
        var options = RunComparisonOptions.Default with
        {
            MaxRegression = parse.GetValue(_maxRegression),
            AllowDifferentMachines = parse.GetValue(_allowDifferentMachines),
        };
        var comparison = RunComparer.Compare(reports, options);
        var paths = ReportWriter.WriteComparison(comparison, parse.GetValue(_out)!, Context.Force);
        Print(comparison, paths);
        return comparison.Passed ? Cli.Success : Cli.GateFailed;
    }

    /// <summary>Each report's label: the path as given, made unique with " (2)", " (3)" when a path is given twice.</summary>
    private static string[] Labels(string[] files)
    {
        var labels = new string[files.Length];
        var seen = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < files.Length; i++)
        {
            seen[files[i]] = seen.TryGetValue(files[i], out int n) ? n + 1 : 1;
            labels[i] = seen[files[i]] == 1 ? files[i] : $"{files[i]} ({seen[files[i]]})";
        }
        return labels;
    }

    private void Print(RunComparison comparison, ComparisonPaths paths)
    {
        var inv = CultureInfo.InvariantCulture;
        string level = (comparison.Options.Confidence * 100).ToString("G3", inv) + "%";
        double? max = comparison.Options.MaxRegression;
        if (Context.Json)
        {
            var result = new CommandResult("compare", comparison.Passed ? "passed" : "gate-failed")
            {
                Outputs = { ["compareMarkdown"] = paths.Markdown, ["compareHtml"] = paths.Html },
                FailedGates = [.. comparison.Regressions.Select(r => new FailedGate("max-regression", r.Label, r.Judged()!.Low, 1 + max!.Value, Regression(r, level, max.Value)))],
                Details =
                {
                    ["baseline"] = comparison.Reports[0].Label,
                    ["confidence"] = comparison.Options.Confidence,
                    ["maxRegression"] = max,
                    ["machinesDiffer"] = comparison.MachinesDiffer,
                    ["models"] = comparison.Latency.Select(l => new
                    {
                        report = l.Label, role = l.Role.ToString().ToLowerInvariant(), samples = l.Median.Samples,
                        medianMs = l.Median.MedianMs, medianLowMs = l.Median.LowMs, medianHighMs = l.Median.HighMs,
                        ratio = l.Ratio?.Ratio, ratioLow = l.Ratio?.Low, ratioHigh = l.Ratio?.High,
                        relativeToBase = l.RelativeToBase?.Ratio, relativeToBaseLow = l.RelativeToBase?.Low, relativeToBaseHigh = l.RelativeToBase?.High,
                        verdict = VerdictWord(l.Verdict),
                    }).ToList(),
                    ["differences"] = comparison.Differences.Select(d => new
                    {
                        report = d.Report, field = d.Field, kind = d.Kind.ToString().ToLowerInvariant(), baseline = d.Baseline, found = d.Found,
                    }).ToList(),
                },
            };
            Context.Out.WriteLine(result.ToJson());
            return;
        }
        foreach (var d in comparison.Differences.Where(d => d.Kind != DifferenceKind.Software))
        {
            Context.Out.WriteLine($"{d.Report} differs from the baseline in {d.Field}: {d.Found} (baseline {d.Baseline}); compared because --allow-different-machines was given");
        }
        foreach (var l in comparison.Latency)
        {
            string median = $"median {l.Median.MedianMs.ToString("F3", inv)} ms ({level} CI {l.Median.LowMs.ToString("F3", inv)}–{l.Median.HighMs.ToString("F3", inv)})";
            string relative = l.RelativeToBase is { } d
                ? $", relative to base {d.Ratio.ToString("F3", inv)} ({level} CI {d.Low.ToString("F3", inv)}–{d.High.ToString("F3", inv)})"
                : "";
            string ratio = l.Ratio is { } r
                ? $", ratio {r.Ratio.ToString("F3", inv)} ({level} CI {r.Low.ToString("F3", inv)}–{r.High.ToString("F3", inv)}){relative}: {VerdictWord(l.Verdict)}"
                : l.Report == 0 ? " (baseline)" : ": no baseline for this model";
            Context.Out.WriteLine($"{l.Role.ToString().ToLowerInvariant(),-9} {l.Label}: {median}{ratio}");
        }
        foreach (var r in comparison.Regressions)
        {
            Context.Error.WriteLine($"gate failed: {Regression(r, level, max!.Value)}");
        }
        string verdict = max is null ? "COMPARED" : comparison.Passed ? "PASSED" : "REGRESSION";
        Context.Out.WriteLine($"{verdict}; report: {paths.Html}");
    }

    private static string Regression(RunLatency r, string level, double max)
    {
        var inv = CultureInfo.InvariantCulture;
        var j = r.Judged()!;
        string which = r.RelativeToBase is null ? "" : " relative to the base model (drift-corrected)";
        return $"{r.Label}: merged median {r.Median.MedianMs.ToString("F3", inv)} ms is {((j.Ratio - 1) * 100).ToString("F1", inv)}% slower than the baseline{which} "
            + $"({level} CI of the ratio {j.Low.ToString("F3", inv)}–{j.High.ToString("F3", inv)}; its lower end exceeds {(1 + max).ToString("G4", inv)}).";
    }
}
