using System.Globalization;
using OnnxLora.Core;

namespace OnnxLora.Generate.Internals;

/// <summary>Generation errors: thin names over <see cref="OnnxLoraException"/>'s factories.</summary>
internal static class GenerateThrow
{
    /// <summary>Checks that <paramref name="promptTokens"/> is non-empty and leaves room for one new token.</summary>
    public static void CheckPrompt(IReadOnlyList<int> promptTokens, int contextLength, string contextSource)
    {
        if (promptTokens.Count == 0)
        {
            throw OnnxLoraException.InvalidOption("--prompt", "0 tokens", "at least one token");
        }
        if (promptTokens.Count >= contextLength)
        {
            throw OnnxLoraException.InvalidOption("--prompt", $"{promptTokens.Count.ToString(CultureInfo.InvariantCulture)} tokens",
                $"fewer than the context length {contextLength.ToString(CultureInfo.InvariantCulture)} ({contextSource})");
        }
    }

    /// <summary>The sequence length to stop at: the prompt plus the new tokens, at most the context.</summary>
    public static int MaxLength(IReadOnlyList<int> promptTokens, GenerationOptions options, int contextLength) =>
        (int)Math.Min(contextLength, (long)promptTokens.Count + options.MaxNewTokens);
}
