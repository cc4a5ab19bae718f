using System.Globalization;
using OnnxLora.Validate.Internals;

namespace OnnxLora.Validate;

public static partial class Validator
{
    /// <summary>Gate names as reports and CLI options spell them.</summary>
    internal const string FiniteGate = "finite";
    internal const string ToleranceGate = "tolerance";
    internal const string Top1Gate = "min-top1";
    internal const string LatencyGate = "max-latency-ratio";
    internal const string RegressionGate = "max-regression";
    internal const string MetricGate = "max-metric-delta";
    internal const string DecodeGate = "decode-tokens";

    private static string G(double v) => v.ToString("G4", CultureInfo.InvariantCulture);

    private static (List<GateReport> Gates, List<GateFailure> Failures) Gates(
        IReadOnlyList<ComparisonReport> prefill, DecodeReport? decode, LatencyReport? latency, BaselineComparison? baseline, TaskMetricsReport? task, ValidationOptions o)
    {
        var failures = new List<GateFailure>();
        var gates = new List<GateReport>();
        // The decode logits (per step, while the tokens agree) are gated as the prefill outputs are.
        var comparisons = prefill.Concat((decode?.Comparisons ?? []).Select(d => new ComparisonReport(ModelRole.Merged, d.Reference, d.Gated, [d.Logits])
        {
            Decode = true,
        })).ToList();

        int before = failures.Count;
        foreach (var c in comparisons)
        {
            foreach (var r in c.Outputs.Where(r => r.NonFiniteActual + r.NonFiniteReference > 0))
            {
                failures.Add(new GateFailure(FiniteGate, c.Name, r.Name, r.NonFiniteActual + r.NonFiniteReference, 0,
                    $"{c.Name}: output {r.Name}: {r.NonFiniteActual} NaN/Inf values in merged, {r.NonFiniteReference} in {c.Reference.ToString().ToLowerInvariant()}."));
            }
        }
        gates.Add(new GateReport(FiniteGate, true, failures.Count == before, "no NaN/Inf in any output",
            failures.Count == before ? "every output of every model is finite" : $"{failures.Count - before} outputs hold NaN/Inf"));

        var gated = comparisons.Where(c => c.Gated).ToList();
        before = failures.Count;
        foreach (var c in gated)
        {
            foreach (var r in c.Outputs.Where(r => r.BeyondTolerance > 0))
            {
                string at = r.WorstIndex is null ? "" : $" at [{string.Join(", ", r.WorstIndex)}] (merged {G(r.WorstActual!.Value)}, reference {G(r.WorstReference!.Value)})";
                failures.Add(new GateFailure(ToleranceGate, c.Name, r.Name, r.MaxAbsError, o.Atol,
                    $"{c.Name}: output {r.Name}: {r.BeyondTolerance} of {r.Elements} elements beyond atol {G(o.Atol)} + rtol {G(o.Rtol)}·|ref|; max abs error {G(r.MaxAbsError)}{at}, max rel error {G(r.MaxRelError)}."));
            }
        }
        string tolLimit = $"|merged − ref| ≤ {G(o.Atol)} + {G(o.Rtol)}·|ref|";
        gates.Add(new GateReport(ToleranceGate, gated.Count > 0, failures.Count == before, tolLimit,
            gated.Count == 0 ? "no gated comparison" : failures.Count == before
                ? $"every element within tolerance in {string.Join(", ", gated.Select(c => c.Name))}"
                : $"{failures.Count - before} outputs beyond tolerance"));

        before = failures.Count;
        var top1 = gated.SelectMany(c => c.Outputs.Where(r => r.Top1Agreement is not null).Select(r => (c, r))).ToList();
        foreach (var (c, r) in top1.Where(x => x.r.Top1Agreement < o.MinTop1))
        {
            failures.Add(new GateFailure(Top1Gate, c.Name, r.Name, r.Top1Agreement, o.MinTop1,
                $"{c.Name}: output {r.Name}: top-1 token agrees at {G(r.Top1Agreement!.Value * 100)}% of {r.Top1Positions} positions; at least {G(o.MinTop1 * 100)}% required."));
        }
        gates.Add(new GateReport(Top1Gate, top1.Count > 0, failures.Count == before, $"top-1 agreement ≥ {G(o.MinTop1 * 100)}%",
            top1.Count == 0 ? $"no gated comparison has output {o.LogitsOutput}"
                : string.Join("; ", top1.Select(x => $"{x.c.Name}: {G(x.r.Top1Agreement!.Value * 100)}% of {x.r.Top1Positions} positions"))));

        before = failures.Count;
        var decodeGated = decode?.Comparisons.Where(d => d.Gated).ToList() ?? [];
        long generated = decode is null ? 0 : (long)decode.BatchSize * decode.NewTokens;
        foreach (var dc in decodeGated.Where(x => x.MatchingTokens != generated))
        {
            failures.Add(new GateFailure(DecodeGate, dc.Name, dc.Logits.Name, dc.MatchingTokens, generated,
                $"{dc.Name}: {dc.MatchingTokens} of {generated} greedy tokens agree; the first difference is at step {dc.FirstDifferentStep}."));
        }
        gates.Add(new GateReport(DecodeGate, decodeGated.Count > 0, failures.Count == before, "every greedy token of merged equals the reference's",
            decode is null ? "no decoding (DecodeTokens 0)" : decodeGated.Count == 0 ? "no gated reference with a key/value cache"
                : string.Join("; ", decodeGated.Select(x => $"{x.Name}: {x.MatchingTokens} of {generated} tokens agree"))));

        before = failures.Count;
        var ratio = latency?.Ratios.FirstOrDefault(x => x.Numerator == ModelRole.Merged && x.Denominator == ModelRole.Base);
        if (o.MaxLatencyRatio is double limit && ratio is not null && !(ratio.Median <= limit))
        {
            failures.Add(new GateFailure(LatencyGate, null, null, ratio.Median, limit,
                $"merged/base latency ratio: median {G(ratio.Median)} (p10 {G(ratio.P10)}, p90 {G(ratio.P90)}, {ratio.Pairs} interleaved pairs) exceeds {G(limit)}."));
        }
        gates.Add(new GateReport(LatencyGate, o.MaxLatencyRatio is not null, failures.Count == before,
            o.MaxLatencyRatio is double l ? $"median merged/base ≤ {G(l)}" : "disabled",
            ratio is null ? "no merged/base ratio measured" : $"median merged/base {G(ratio.Median)} (p10 {G(ratio.P10)}, p90 {G(ratio.P90)})"));

        before = failures.Count;
        var merged = baseline?.Models.FirstOrDefault(m => m.Role == ModelRole.Merged);
        string level = baseline is null ? "95%" : $"{G(baseline.Confidence * 100)}%";
        if (o.MaxRegression is double max && merged is not null && merged.Verdict == LatencyVerdict.Regression)
        {
            failures.Add(new GateFailure(RegressionGate, null, null, merged.Judged().Low, 1 + max,
                $"merged latency vs baseline {baseline!.Path}: {RegressionDetail(merged, level)}; even the interval's lower end is more than {G(max * 100)}% slower."));
        }
        gates.Add(new GateReport(RegressionGate, o.MaxRegression is not null, failures.Count == before,
            o.MaxRegression is double m ? $"lower end of the {level} CI of the merged model's latency ratio to the baseline ≤ {G(1 + m)}" : "disabled",
            merged is null ? "no baseline report" : $"{RegressionDetail(merged, level)}: {Fmt.Verdict(merged.Verdict)}"));

        before = failures.Count;
        double? mergedMetric = task?.ValueOf(ModelRole.Merged), unmergedMetric = task?.ValueOf(ModelRole.Unmerged);
        double? metricDelta = mergedMetric is double mv && unmergedMetric is double uv ? Math.Abs(mv - uv) : null;
        if (o.MaxMetricDelta is double maxDelta && metricDelta is double d && !(d <= maxDelta))
        {
            failures.Add(new GateFailure(MetricGate, "merged vs unmerged", task!.Metric, d, maxDelta,
                $"{task.Metric} on {task.DataFile}: merged {G(mergedMetric!.Value)}, unmerged {G(unmergedMetric!.Value)}; the difference {G(d)} exceeds {G(maxDelta)}."));
        }
        gates.Add(new GateReport(MetricGate, o.MaxMetricDelta is not null, failures.Count == before,
            o.MaxMetricDelta is double md ? $"|merged − unmerged| {task?.Metric ?? "task metric"} ≤ {G(md)}" : "disabled",
            metricDelta is double diff ? $"{task!.Metric}: merged {G(mergedMetric!.Value)}, unmerged {G(unmergedMetric!.Value)}, difference {G(diff)}" : "no task metric (--data) on merged and unmerged"));

        return (gates, failures);
    }

    /// <summary>"median 1.357 ms vs 1.234 ms, ratio 1.100 (95% CI 1.085–1.117), relative to the base model 1.098 (95% CI …)".</summary>
    private static string RegressionDetail(BaselineLatency m, string level)
    {
        string text = $"median {Fmt.Ms(m.Current.MedianMs)} ms vs {Fmt.Ms(m.Baseline.MedianMs)} ms, ratio {Fmt.Ratio(m.Ratio.Ratio)} ({level} CI {Fmt.Ratio(m.Ratio.Low)}–{Fmt.Ratio(m.Ratio.High)})";
        return m.RelativeToBase is { } r
            ? $"{text}; relative to the base model (drift-corrected, judged) {Fmt.Ratio(r.Ratio)} ({level} CI {Fmt.Ratio(r.Low)}–{Fmt.Ratio(r.High)})"
            : text;
    }
}
