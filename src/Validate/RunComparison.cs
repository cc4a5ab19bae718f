namespace OnnxLora.Validate;

/// <summary>How one model's latency in a report compares with the same model role in the baseline report.</summary>
public enum LatencyVerdict
{
    /// <summary>The baseline itself.</summary>
    Baseline,

    /// <summary>The baseline report has no model of this role.</summary>
    NoBaseline,

    /// <summary>The confidence interval of the judged ratio contains 1: no change that the noise allows to see.</summary>
    NoSignificantChange,

    /// <summary>Significantly faster: the whole confidence interval of the ratio is below 1.</summary>
    Faster,

    /// <summary>Significantly slower (the whole interval is above 1), but not beyond the tolerated regression.</summary>
    Slower,

    /// <summary>
    /// Slower beyond <see cref="RunComparisonOptions.MaxRegression"/>: the lower end of the interval exceeds
    /// 1 + MaxRegression. For the merged model this fails the <c>max-regression</c> gate.
    /// </summary>
    Regression,
}

/// <summary>What a field that differs between two reports describes, which decides whether they may be compared.</summary>
public enum DifferenceKind
{
    /// <summary>The machine (CPU model, cores, memory, GPU and its driver): refused unless different machines are allowed.</summary>
    Machine,

    /// <summary>How the models were run and fed (provider, its options, threads, graph optimisation, inputs): refused likewise.</summary>
    Settings,

    /// <summary>Software that may change between the runs being compared (ONNX Runtime, OnnxLora, the OS kernel): listed only.</summary>
    Software,
}

/// <summary>A field in which a report differs from the baseline report.</summary>
/// <param name="Report">The report's label.</param>
/// <param name="Field">The field as docs/report-schema.md names it (<c>machine.cpuModel</c>, <c>inputs.tensors[input_ids]</c>).</param>
/// <param name="Kind">What the field describes.</param>
/// <param name="Baseline">The baseline's value, as text.</param>
/// <param name="Found">This report's value, as text.</param>
public sealed record SettingDifference(string Report, string Field, DifferenceKind Kind, string Baseline, string Found);

/// <summary>
/// Settings of a cross-run latency comparison. Change with <c>with</c>:
/// <c>RunComparisonOptions.Default with { MaxRegression = 0.05 }</c>.
/// </summary>
public sealed record RunComparisonOptions
{
    /// <summary>All defaults.</summary>
    public static RunComparisonOptions Default { get; } = new();

    /// <summary>
    /// Largest tolerated slowdown as a fraction (0.05 = 5%): a model is a <see cref="LatencyVerdict.Regression"/> when
    /// the lower end of the confidence interval of its ratio to the baseline exceeds 1 + MaxRegression. Default null:
    /// no model is a regression.
    /// </summary>
    public double? MaxRegression { get; init; }

    /// <summary>Compare reports whose machine or settings differ (the differences are listed). Default false: refused.</summary>
    public bool AllowDifferentMachines { get; init; }

    /// <summary>Two-sided confidence level of the intervals. Default 0.95.</summary>
    public double Confidence { get; init; } = 0.95;

    /// <summary>Bootstrap resamples per model and report. Default 2000.</summary>
    public int Resamples { get; init; } = 2000;

    /// <summary>Seed of the baseline's resamples; report <c>i</c> (0 = baseline) uses Seed + i. Default 1.</summary>
    public int Seed { get; init; } = 1;
}

/// <summary>A validation report to compare, with the label it is shown under and the file it was read from.</summary>
public sealed record ComparedReport(string Label, string Path, ValidationReport Report);

/// <summary>A median latency with its bootstrap confidence interval, in milliseconds.</summary>
/// <param name="Samples">Timed runs it is the median of.</param>
/// <param name="MedianMs">The median.</param>
/// <param name="LowMs">Lower end of the interval.</param>
/// <param name="HighMs">Upper end of the interval.</param>
public sealed record MedianEstimate(int Samples, double MedianMs, double LowMs, double HighMs);

/// <summary>A ratio of median latencies (report / baseline) with its bootstrap confidence interval.</summary>
public sealed record RatioEstimate(double Ratio, double Low, double High);

/// <summary>One model of one report in a comparison.</summary>
/// <param name="Report">Index of the report (0 = baseline).</param>
/// <param name="Label">The report's label.</param>
/// <param name="Role">The model's role.</param>
/// <param name="ContentSha256">The model's content hash (equal hashes: the same model).</param>
/// <param name="Median">Median latency with its interval.</param>
/// <param name="P90Ms">90th percentile latency.</param>
/// <param name="TokensPerSecond">Throughput at the mean latency, as the report states it.</param>
/// <param name="Ratio">Ratio of medians to the baseline's model of the same role; null for the baseline and when it has none.</param>
/// <param name="RelativeToBase">
/// The drift-corrected ratio: the median of this model's per-round latency ratios to the base model (timed in the same
/// interleaved rounds), divided by the same median in the baseline report. Machine-wide slowdowns between the runs
/// (load, clock speed) cancel. Only when both reports timed the same base model (same content hash) with the same
/// ONNX Runtime, for roles other than base; else null.
/// </param>
/// <param name="Verdict">What the interval of <paramref name="RelativeToBase"/>, where there is one, else of <paramref name="Ratio"/>, says.</param>
public sealed record RunLatency(
    int Report,
    string Label,
    ModelRole Role,
    string ContentSha256,
    MedianEstimate Median,
    double P90Ms,
    double TokensPerSecond,
    RatioEstimate? Ratio,
    RatioEstimate? RelativeToBase,
    LatencyVerdict Verdict)
{
    /// <summary>The ratio the verdict (and the gate) reads: <see cref="RelativeToBase"/> where there is one, else <see cref="Ratio"/>.</summary>
    public RatioEstimate? Judged() => RelativeToBase ?? Ratio;
}

/// <summary>
/// Several validation reports compared with the first (the baseline): per model role and report, the median
/// latency and its ratio to the baseline with bootstrap confidence intervals, and where the base model is a valid
/// control, the drift-corrected ratio (<see cref="RunLatency.RelativeToBase"/>). Made by <see cref="RunComparer.Compare"/>;
/// written by <see cref="ReportWriter.ToComparisonMarkdown"/> and <see cref="ReportWriter.ToComparisonHtml"/>.
/// </summary>
/// <param name="Options">The options it was made with.</param>
/// <param name="Reports">The reports, baseline first.</param>
/// <param name="Differences">Fields in which a report differs from the baseline: software always, machine and settings
/// only when <see cref="RunComparisonOptions.AllowDifferentMachines"/>.</param>
/// <param name="Latency">Per role (merged, unmerged, base), per report.</param>
public sealed record RunComparison(
    RunComparisonOptions Options,
    IReadOnlyList<ComparedReport> Reports,
    IReadOnlyList<SettingDifference> Differences,
    IReadOnlyList<RunLatency> Latency)
{
    /// <summary>Merged models slower than the baseline's beyond <see cref="RunComparisonOptions.MaxRegression"/>: what fails the gate.</summary>
    public IReadOnlyList<RunLatency> Regressions => [.. Latency.Where(l => l.Role == ModelRole.Merged && l.Verdict == LatencyVerdict.Regression)];

    /// <summary>True when no merged model regressed beyond the tolerated slowdown.</summary>
    public bool Passed => Regressions.Count == 0;

    /// <summary>True when reports from different machines or settings were compared.</summary>
    public bool MachinesDiffer => Differences.Any(d => d.Kind != DifferenceKind.Software);
}

/// <summary>
/// This run's latency compared with a baseline report's (<see cref="ValidationOptions.BaselineReport"/>), model role
/// by model role.
/// </summary>
/// <param name="Path">Full path of the baseline report.</param>
/// <param name="CreatedUtc">When the baseline report was made.</param>
/// <param name="MaxRegression">The tolerated slowdown of the merged model (fraction), null when the gate is off.</param>
/// <param name="Confidence">Two-sided confidence level of the intervals.</param>
/// <param name="Resamples">Bootstrap resamples per model.</param>
/// <param name="Seed">Seed of the baseline's resamples (this run's use Seed + 1).</param>
/// <param name="Differences">Fields in which this run differs from the baseline.</param>
/// <param name="Models">One entry per role present in both.</param>
public sealed record BaselineComparison(
    string Path,
    DateTimeOffset CreatedUtc,
    double? MaxRegression,
    double Confidence,
    int Resamples,
    int Seed,
    IReadOnlyList<SettingDifference> Differences,
    IReadOnlyList<BaselineLatency> Models);

/// <summary>One model role's latency in this run against the baseline's.</summary>
/// <param name="Role">The role.</param>
/// <param name="SameModel">Whether the two models have the same content hash.</param>
/// <param name="Baseline">The baseline's median.</param>
/// <param name="Current">This run's median.</param>
/// <param name="Ratio">This run's median / the baseline's.</param>
/// <param name="RelativeToBase">The drift-corrected ratio (see <see cref="RunLatency.RelativeToBase"/>), or null.</param>
/// <param name="Verdict">What the interval of <paramref name="RelativeToBase"/>, where there is one, else of <paramref name="Ratio"/>, says.</param>
public sealed record BaselineLatency(
    ModelRole Role,
    bool SameModel,
    MedianEstimate Baseline,
    MedianEstimate Current,
    RatioEstimate Ratio,
    RatioEstimate? RelativeToBase,
    LatencyVerdict Verdict)
{
    /// <summary>The ratio the verdict (and the gate) reads: <see cref="RelativeToBase"/> where there is one, else <see cref="Ratio"/>.</summary>
    public RatioEstimate Judged() => RelativeToBase ?? Ratio;
}
