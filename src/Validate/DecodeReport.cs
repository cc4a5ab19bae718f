namespace OnnxLora.Validate;

/// <summary>
/// Greedy generation through the with-past graphs (<see cref="ValidationOptions.DecodeTokens"/>): the time to the first
/// token (prefill of the prompt with an empty past), the latency of each further token (one decode step feeding
/// <c>present.*</c> back as <c>past_key_values.*</c>), and the merged model's generated tokens and per-step logits
/// compared with each reference's. Rounds are interleaved as for <see cref="LatencyReport"/>: each round generates once
/// with every model, the starting model rotating.
/// </summary>
/// <param name="PromptTokens">Prompt length P (tokens per row).</param>
/// <param name="PromptIds">The prompt every model was given, row-major [batch, P]: uniform token ids drawn with <see cref="ValidationOptions.Seed"/>.</param>
/// <param name="NewTokens">Tokens generated per row and round, N: the first from the prefill, N − 1 from decode steps.</param>
/// <param name="BatchSize">Rows generated together.</param>
/// <param name="Warmup">Untimed generations per model before timing.</param>
/// <param name="Rounds">Timed generations per model.</param>
/// <param name="Method">How the loop feeds the graphs, in words.</param>
/// <param name="Models">Per model with a key/value cache, in <see cref="ValidationReport.Models"/> order.</param>
/// <param name="Ratios">Per-round ratios of the median per-token latency (merged/base, unmerged/merged, …).</param>
/// <param name="Comparisons">The merged model's generation against each reference's.</param>
public sealed record DecodeReport(
    int PromptTokens,
    IReadOnlyList<long> PromptIds,
    int NewTokens,
    long BatchSize,
    int Warmup,
    int Rounds,
    string Method,
    IReadOnlyList<ModelDecode> Models,
    IReadOnlyList<LatencyRatio> Ratios,
    IReadOnlyList<DecodeComparison> Comparisons);

/// <summary>One model's generation: latency of the first token and of each further token, throughput, and its tokens.</summary>
/// <param name="Role">The model's role.</param>
/// <param name="FirstToken">Time to first token: the prefill step (prompt, empty past) and its argmax, one sample per round.</param>
/// <param name="PerToken">Latency of one decode step (one new token for every row), over every step of every round.</param>
/// <param name="TokensPerSecond">Decode throughput: rows × (N − 1) / total decode-step time, over all rounds.</param>
/// <param name="FirstTokenSamplesMs">The first-token time of each round, in round order.</param>
/// <param name="StepSamplesMs">Decode-step times, round-major: element r·(N − 1) + i is step i + 1 of round r.</param>
/// <param name="TokenIds">The greedy tokens, row-major [batch, N] (the same in every round).</param>
public sealed record ModelDecode(
    ModelRole Role,
    LatencyStats FirstToken,
    LatencyStats PerToken,
    double TokensPerSecond,
    IReadOnlyList<double> FirstTokenSamplesMs,
    IReadOnlyList<double> StepSamplesMs,
    IReadOnlyList<long> TokenIds);

/// <summary>
/// The merged model's greedy generation against a reference's. Each model generates from its own tokens, so the logits
/// of a step are compared only while every earlier token agreed: steps 0 … <see cref="ComparedSteps"/> − 1.
/// </summary>
/// <param name="Reference">The reference model.</param>
/// <param name="Gated">Whether the gates apply (not for the base model, which differs by design).</param>
/// <param name="MatchingTokens">Generated tokens (of batch × N) equal to the reference's at the same row and step.</param>
/// <param name="FirstDifferentStep">The first step where a row's token differs, null when every token agrees.</param>
/// <param name="ComparedSteps">Steps whose logits were compared: up to and including <paramref name="FirstDifferentStep"/>.</param>
/// <param name="Logits">The compared logits of the last position of each step, shape [steps, batch, vocab].</param>
public sealed record DecodeComparison(
    ModelRole Reference,
    bool Gated,
    long MatchingTokens,
    int? FirstDifferentStep,
    int ComparedSteps,
    OutputComparison Logits)
{
    /// <summary>"merged vs unmerged (decode)" and the like.</summary>
    public string Name => new ComparisonReport(ModelRole.Merged, Reference, Gated, []) { Decode = true }.Name;
}
