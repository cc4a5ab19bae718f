using System.Globalization;
using OnnxLora.Core;

namespace OnnxLora.Generate;

/// <summary>
/// How to pick tokens. Greedy (argmax) unless <see cref="Temperature"/>, <see cref="TopK"/> or <see cref="TopP"/> is
/// set, then sampling with <see cref="Seed"/> (Hugging Face / ONNX Runtime GenAI meanings: logits / temperature, keep
/// the k most likely, keep the smallest set whose probability reaches p).
/// </summary>
public sealed record GenerationOptions
{
    /// <summary>Most new tokens (default 32); generation also stops at an end-of-sequence token.</summary>
    public int MaxNewTokens { get; init; } = 32;

    /// <summary>Sampling temperature &gt; 0 (default none: greedy).</summary>
    public double? Temperature { get; init; }

    /// <summary>Sample among the k most likely tokens, k ≥ 1 (default none).</summary>
    public int? TopK { get; init; }

    /// <summary>Sample among the most likely tokens whose probabilities add up to p, 0 &lt; p ≤ 1 (default none).</summary>
    public double? TopP { get; init; }

    /// <summary>Seed of the sampler (default 0).</summary>
    public int Seed { get; init; }

    /// <summary>True when a sampling option is set.</summary>
    public bool DoSample => Temperature is not null || TopK is not null || TopP is not null;

    /// <summary>The defaults: greedy, 32 new tokens.</summary>
    public static GenerationOptions Default { get; } = new();

    /// <summary>Checks the ranges.</summary>
    /// <exception cref="OnnxLoraException">An option is out of range (bad input).</exception>
    public void Validate()
    {
        if (MaxNewTokens < 1)
        {
            throw OnnxLoraException.InvalidOption("--max-new-tokens", MaxNewTokens.ToString(CultureInfo.InvariantCulture), "at least 1");
        }
        if (Temperature is double t && !(t > 0 && double.IsFinite(t)))
        {
            throw OnnxLoraException.InvalidOption("--temperature", t.ToString(CultureInfo.InvariantCulture), "a number > 0");
        }
        if (TopK is < 1)
        {
            throw OnnxLoraException.InvalidOption("--top-k", TopK.Value.ToString(CultureInfo.InvariantCulture), "at least 1");
        }
        if (TopP is double p && !(p > 0 && p <= 1))
        {
            throw OnnxLoraException.InvalidOption("--top-p", p.ToString(CultureInfo.InvariantCulture), "0 < p ≤ 1");
        }
    }
}

/// <summary>What a generation produced, with its timings.</summary>
/// <param name="PromptTokens">The prompt's token ids (special tokens included).</param>
/// <param name="Tokens">The new token ids, in order (an end-of-sequence token that stopped generation included).</param>
/// <param name="Text">The new tokens' text.</param>
/// <param name="TimeToFirstTokenMs">From the start of the prompt's forward pass to the first new token.</param>
/// <param name="TokenMs">Latency of each new token after the first.</param>
public sealed record GenerationResult(IReadOnlyList<int> PromptTokens, IReadOnlyList<int> Tokens, string Text, double TimeToFirstTokenMs, IReadOnlyList<double> TokenMs);
