using System.Globalization;
using OnnxLora.Validate.Internals;

namespace OnnxLora.Validate;

/// <summary>The decode section (greedy generation through the key/value cache), shared by the Markdown and HTML reports.</summary>
public static partial class ReportWriter
{
    private static string DecodeIntro(DecodeReport d) =>
        $"Greedy generation of {d.NewTokens} tokens per row from a prompt of {d.PromptTokens} tokens, batch {d.BatchSize}: "
        + $"the first token from the prefill (empty past), then {d.NewTokens - 1} decode steps of one token. "
        + $"{d.Rounds} interleaved rounds after {d.Warmup} warm-up generations per model; {d.Method}. "
        + "Tokens/s = rows × decode steps / decode time.";

    private static readonly string[] DecodeHeader =
        ["Model", "First token p50 ms", "First token min–max", "Per token p50 ms", "p90", "p99", "Mean", "Steps timed", "Tokens/s"];

    private static IEnumerable<string[]> DecodeRows(DecodeReport d) => d.Models.Select(m => new[]
    {
        Fmt.Role(m.Role), Fmt.Ms(m.FirstToken.P50Ms), $"{Fmt.Ms(m.FirstToken.MinMs)}–{Fmt.Ms(m.FirstToken.MaxMs)}",
        Fmt.Ms(m.PerToken.P50Ms), Fmt.Ms(m.PerToken.P90Ms), Fmt.Ms(m.PerToken.P99Ms), Fmt.Ms(m.PerToken.MeanMs),
        m.PerToken.Count.ToString(CultureInfo.InvariantCulture), Fmt.Rate(m.TokensPerSecond),
    });

    private static readonly string[] DecodeRatioHeader = ["Per-token ratio (per round, of the round's median step)", "Median", "p10", "p90", "Pairs"];

    private static IEnumerable<string[]> DecodeRatioRows(DecodeReport d) => d.Ratios.Select(r => new[]
    {
        r.Name, Fmt.Ratio(r.Median), Fmt.Ratio(r.P10), Fmt.Ratio(r.P90), r.Pairs.ToString(CultureInfo.InvariantCulture),
    });

    private static readonly string[] DecodeComparisonHeader =
        ["Comparison", "Tokens equal", "First different step", "Logits compared (steps)", "Max abs", "Max rel", "Cosine", "Beyond tol", "Top-1", "Gated"];

    private static IEnumerable<string[]> DecodeComparisonRows(DecodeReport d) => d.Comparisons.Select(c => new[]
    {
        c.Name, $"{Fmt.Int(c.MatchingTokens)} of {Fmt.Int(d.BatchSize * d.NewTokens)}",
        c.FirstDifferentStep is int s ? s.ToString(CultureInfo.InvariantCulture) : "none",
        c.ComparedSteps.ToString(CultureInfo.InvariantCulture), Fmt.Err(c.Logits.MaxAbsError), Fmt.Err(c.Logits.MaxRelError),
        Fmt.Cos(c.Logits.CosineSimilarity), Fmt.Int(c.Logits.BeyondTolerance),
        c.Logits.Top1Agreement is double t ? Fmt.Share(t) : "–", c.Gated ? "yes" : "no",
    });
}
