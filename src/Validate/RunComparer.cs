using System.Globalization;
using OnnxLora.Core;
using OnnxLora.Validate.Internals;

namespace OnnxLora.Validate;

/// <summary>
/// Compares the latency of several validation reports with the first (the baseline), across runs: for every model
/// role and report, the median of the timed runs with a percentile-bootstrap confidence interval, the ratio of
/// medians to the baseline's with its interval and, where the base model is a valid control, the drift-corrected
/// ratio (docs/compare.md explains the method). Reports from different machines or settings are refused unless
/// <see cref="RunComparisonOptions.AllowDifferentMachines"/>.
/// </summary>
public static class RunComparer
{
    /// <summary>Memory sizes within this share of each other count as the same machine (kernels reserve slightly different amounts).</summary>
    private const double MemoryTolerance = 0.02;

    private static readonly ModelRole[] Roles = [ModelRole.Merged, ModelRole.Unmerged, ModelRole.Base];

    /// <summary>Compares <paramref name="reports"/> (at least two; the first is the baseline).</summary>
    /// <exception cref="OnnxLoraException">Bad input: fewer than two reports, bad options, a report without latency or
    /// with unusable samples, or a report from another machine or with other settings (naming the file and the
    /// field) when they are not allowed.</exception>
    public static RunComparison Compare(IReadOnlyList<ComparedReport> reports, RunComparisonOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(reports);
        options ??= RunComparisonOptions.Default;
        CheckOptions(options);
        if (reports.Count < 2)
        {
            throw ValidateThrow.Option("reports", reports.Count.ToString(CultureInfo.InvariantCulture), "at least two validation reports (the first is the baseline)");
        }
        foreach (var r in reports)
        {
            CheckLatency(r);
        }

        var baseline = reports[0];
        var differences = new List<SettingDifference>();
        foreach (var r in reports.Skip(1))
        {
            var found = Differences(baseline, r);
            var refused = found.Where(d => d.Kind != DifferenceKind.Software).ToList();
            if (refused.Count > 0 && !options.AllowDifferentMachines)
            {
                throw Refused(baseline, r, refused);
            }
            differences.AddRange(found);
        }

        var replicates = new Dictionary<(int, ModelRole), double[]>();
        var rows = new List<RunLatency>();
        foreach (var role in Roles)
        {
            for (int i = 0; i < reports.Count; i++)
            {
                var model = reports[i].Report.Latency!.Models.FirstOrDefault(m => m.Role == role);
                if (model is null)
                {
                    continue;
                }
                double[] medians = Bootstrap.Medians(model.SamplesMs, options.Resamples, unchecked(options.Seed + i));
                replicates[(i, role)] = medians;
                var (low, high) = Bootstrap.Interval(medians, options.Confidence);
                var median = new MedianEstimate(model.SamplesMs.Count, Bootstrap.Median(model.SamplesMs), low, high);
                string hash = reports[i].Report.Models.FirstOrDefault(m => m.Role == role)?.ContentSha256 ?? "";
                RatioEstimate? ratio = null, relative = null;
                var verdict = i == 0 ? LatencyVerdict.Baseline : LatencyVerdict.NoBaseline;
                if (i > 0 && replicates.TryGetValue((0, role), out var baseMedians))
                {
                    var baseModel = reports[0].Report.Latency!.Models.First(m => m.Role == role);
                    ratio = Ratio(model.SamplesMs, medians, baseModel.SamplesMs, baseMedians, options.Confidence);
                    if (role != ModelRole.Base && Control(reports[0].Report, reports[i].Report))
                    {
                        var before = PerRound(reports[0].Report, role);
                        var now = PerRound(reports[i].Report, role);
                        relative = Ratio(now, Bootstrap.Medians(now, options.Resamples, unchecked(options.Seed + i)),
                            before, Bootstrap.Medians(before, options.Resamples, options.Seed), options.Confidence);
                    }
                    verdict = Verdict(relative ?? ratio, options.MaxRegression);
                }
                rows.Add(new RunLatency(i, reports[i].Label, role, hash, median, model.Stats.P90Ms, model.TokensPerSecond, ratio, relative, verdict));
            }
        }
        return new RunComparison(options, reports, differences, rows);
    }

    /// <summary>
    /// Whether the base model can serve as a control for the machine between two reports: both timed it, it is the same
    /// model (content hash) and the same ONNX Runtime ran it. Then whatever slowed the base model down was the machine.
    /// </summary>
    internal static bool Control(ValidationReport baseline, ValidationReport report)
    {
        string? Hash(ValidationReport r) => r.Models.FirstOrDefault(m => m.Role == ModelRole.Base)?.ContentSha256;
        return baseline.Latency!.Models.Any(m => m.Role == ModelRole.Base) && report.Latency!.Models.Any(m => m.Role == ModelRole.Base)
            && Hash(baseline) is { Length: > 0 } a && a == Hash(report) && baseline.OnnxRuntimeVersion == report.OnnxRuntimeVersion;
    }

    /// <summary>A model's latency divided by the base model's in the same round, round by round.</summary>
    private static double[] PerRound(ValidationReport r, ModelRole role)
    {
        var model = r.Latency!.Models.First(m => m.Role == role).SamplesMs;
        var control = r.Latency.Models.First(m => m.Role == ModelRole.Base).SamplesMs;
        return [.. model.Zip(control, (a, b) => a / b)];
    }

    /// <summary>The ratio of medians (candidate / baseline) and its percentile interval from paired replicates of independent resamples.</summary>
    internal static RatioEstimate Ratio(IReadOnlyList<double> samples, double[] medians, IReadOnlyList<double> baselineSamples, double[] baselineMedians, double confidence)
    {
        var (low, high) = Bootstrap.Interval(Bootstrap.Ratios(medians, baselineMedians), confidence);
        return new RatioEstimate(Bootstrap.Median(samples) / Bootstrap.Median(baselineSamples), low, high);
    }

    /// <summary>What a ratio's interval says, given the tolerated slowdown.</summary>
    internal static LatencyVerdict Verdict(RatioEstimate ratio, double? maxRegression)
    {
        if (maxRegression is double m && ratio.Low > 1 + m)
        {
            return LatencyVerdict.Regression;
        }
        if (ratio.Low > 1)
        {
            return LatencyVerdict.Slower;
        }
        return ratio.High < 1 ? LatencyVerdict.Faster : LatencyVerdict.NoSignificantChange;
    }

    /// <summary>
    /// Every field in which <paramref name="other"/> differs from <paramref name="baseline"/>: machine (CPU model, cores,
    /// memory beyond 2%, architecture, GPU name and driver), settings (provider, its options, session options, inputs
    /// and how they were generated) and software (ONNX Runtime, OnnxLora, OS).
    /// </summary>
    public static IReadOnlyList<SettingDifference> Differences(ComparedReport baseline, ComparedReport other)
    {
        ArgumentNullException.ThrowIfNull(baseline);
        ArgumentNullException.ThrowIfNull(other);
        var a = Fields(baseline.Report);
        var b = Fields(other.Report);
        var differences = new List<SettingDifference>();
        foreach (var (field, (kind, value)) in a)
        {
            string found = b.TryGetValue(field, out var v) ? v.Value : "none";
            if (!Same(field, value, found))
            {
                differences.Add(new SettingDifference(other.Label, field, kind, value, found));
            }
        }
        foreach (var (field, (kind, value)) in b.Where(kv => !a.ContainsKey(kv.Key)))
        {
            differences.Add(new SettingDifference(other.Label, field, kind, "none", value));
        }
        return differences;
    }

    /// <summary>Checks the machine part of a report made now against a baseline before a run, so a mismatch fails early.</summary>
    internal static void CheckMachine(ComparedReport baseline, string label, MachineReport machine, bool allowDifferentMachines)
    {
        if (allowDifferentMachines)
        {
            return;
        }
        var now = baseline.Report with { Machine = machine with { Gpu = baseline.Report.Machine.Gpu } };
        var refused = Differences(baseline, new ComparedReport(label, label, now)).Where(d => d.Kind == DifferenceKind.Machine).ToList();
        if (refused.Count > 0)
        {
            throw Refused(baseline, new ComparedReport(label, label, now), refused);
        }
    }

    private static OnnxLoraException Refused(ComparedReport baseline, ComparedReport report, List<SettingDifference> refused)
    {
        var first = refused[0];
        string more = refused.Count == 1 ? "" : $" (also differs: {string.Join(", ", refused.Skip(1).Select(d => d.Field))})";
        return ValidateThrow.Invalid(report.Path, $"field {first.Field}", Quote(first.Found),
            $"{Quote(first.Baseline)} as in the baseline {baseline.Path}{more}; reports from different machines or settings are not compared unless allowed (--allow-different-machines, AllowDifferentMachines)");
    }

    private static string Quote(string value) => $"\"{value}\"";

    private static bool Same(string field, string a, string b)
    {
        if (field == "machine.memoryBytes" && long.TryParse(a, NumberStyles.None, CultureInfo.InvariantCulture, out long x)
            && long.TryParse(b, NumberStyles.None, CultureInfo.InvariantCulture, out long y))
        {
            return Math.Abs(x - y) <= MemoryTolerance * Math.Max(x, y);
        }
        return a == b;
    }

    private static Dictionary<string, (DifferenceKind Kind, string Value)> Fields(ValidationReport r)
    {
        static string S(object? v) => v switch
        {
            null => "none",
            bool b => b ? "true" : "false",
            Enum e => Fmt.Camel(e),
            IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
            _ => v.ToString() ?? "none",
        };
        var m = r.Machine;
        var p = r.Provider;
        var fields = new Dictionary<string, (DifferenceKind, string)>(StringComparer.Ordinal)
        {
            ["machine.architecture"] = (DifferenceKind.Machine, m.Architecture),
            ["machine.cpuModel"] = (DifferenceKind.Machine, m.CpuModel),
            ["machine.logicalCores"] = (DifferenceKind.Machine, S(m.LogicalCores)),
            ["machine.memoryBytes"] = (DifferenceKind.Machine, S(m.MemoryBytes)),
            ["machine.gpu.name"] = (DifferenceKind.Machine, S(m.Gpu?.Name)),
            ["machine.gpu.driver"] = (DifferenceKind.Machine, S(m.Gpu?.Driver)),
            ["provider.used"] = (DifferenceKind.Settings, p.Used),
            ["provider.options"] = (DifferenceKind.Settings, string.Join(", ", p.Options.Select(o => $"{o.Name}={o.Value}"))),
            ["provider.session.intraOpThreads"] = (DifferenceKind.Settings, S(p.Session.IntraOpThreads)),
            ["provider.session.interOpThreads"] = (DifferenceKind.Settings, S(p.Session.InterOpThreads)),
            ["provider.session.graphOptimization"] = (DifferenceKind.Settings, S(p.Session.GraphOptimization)),
            ["provider.session.executionMode"] = (DifferenceKind.Settings, p.Session.ExecutionMode),
            ["provider.session.cpuMemArena"] = (DifferenceKind.Settings, S(p.Session.CpuMemArena)),
            ["inputs.generated"] = (DifferenceKind.Settings, S(r.Inputs.Generated)),
            ["options.seed"] = (DifferenceKind.Settings, S(r.Options.Seed)),
            ["options.padding"] = (DifferenceKind.Settings, S(r.Options.Padding)),
            ["onnxRuntimeVersion"] = (DifferenceKind.Software, r.OnnxRuntimeVersion),
            ["toolVersion"] = (DifferenceKind.Software, r.ToolVersion),
            ["machine.os"] = (DifferenceKind.Software, m.Os),
        };
        foreach (var t in r.Inputs.Tensors)
        {
            fields[$"inputs.tensors[{t.Name}]"] = (DifferenceKind.Settings, $"{t.ElementType.ReportName()} {Fmt.Shape(t.Shape)}");
        }
        return fields;
    }

    private static void CheckLatency(ComparedReport r)
    {
        var latency = r.Report.Latency ?? throw ValidateThrow.Invalid(r.Path, "field latency", "null (latency was not measured)",
            "a report of a run that timed the models (validate with --runs above 0 or --duration)");
        for (int i = 0; i < latency.Models.Count; i++)
        {
            var samples = latency.Models[i].SamplesMs;
            if (samples.Count == 0)
            {
                throw ValidateThrow.Invalid(r.Path, $"field latency.models[{i}].samplesMs", "no samples", "the timed runs' latencies");
            }
            for (int j = 0; j < samples.Count; j++)
            {
                if (!double.IsFinite(samples[j]) || samples[j] <= 0)
                {
                    throw ValidateThrow.Invalid(r.Path, $"field latency.models[{i}].samplesMs[{j}]",
                        double.IsFinite(samples[j]) ? samples[j].ToString("R", CultureInfo.InvariantCulture) : "null", "a positive time in milliseconds");
                }
            }
        }
    }

    private static void CheckOptions(RunComparisonOptions o)
    {
        if (o.MaxRegression is double m && (!(m >= 0) || double.IsInfinity(m)))
        {
            throw ValidateThrow.Option("MaxRegression", m.ToString("R", CultureInfo.InvariantCulture), "a finite fraction ≥ 0 (0.05 = 5%)");
        }
        if (!(o.Confidence > 0 && o.Confidence < 1))
        {
            throw ValidateThrow.Option("Confidence", o.Confidence.ToString("R", CultureInfo.InvariantCulture), "a level in (0, 1)");
        }
        if (o.Resamples < 100)
        {
            throw ValidateThrow.Option("Resamples", o.Resamples.ToString(CultureInfo.InvariantCulture), "at least 100");
        }
    }
}
