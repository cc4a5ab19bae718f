namespace OnnxLora.Generate;

/// <summary>A model that continues a prompt token by token (<see cref="GenAiGenerator"/>, <see cref="EagerGenerator"/>).</summary>
public interface ITextGenerator : IDisposable
{
    /// <summary>The longest sequence (prompt + new tokens) the model takes.</summary>
    int ContextLength { get; }

    /// <summary>The prompt's token ids, with the special tokens the tokenizer adds (e.g. &lt;s&gt;).</summary>
    IReadOnlyList<int> Encode(string prompt);

    /// <summary>
    /// Continues <paramref name="promptTokens"/>: one new token at a time, each passed to <paramref name="onText"/> as
    /// text as soon as it is known, until <see cref="GenerationOptions.MaxNewTokens"/>, an end-of-sequence token or the
    /// context length.
    /// </summary>
    /// <exception cref="Core.OnnxLoraException">Bad input: the prompt is empty or fills the context; an option is out of range.</exception>
    GenerationResult Generate(IReadOnlyList<int> promptTokens, GenerationOptions options, Action<string>? onText = null);
}
