using System.CommandLine;

namespace OnnxLora.MergeExport.Internals;

/// <summary>
/// An option that takes one word of a fixed set (<c>--combine dare_linear</c>, <c>--dtype fp16</c>),
/// typed as the value the word stands for. Help and completions list the documented words; a word
/// outside the set is a parse error (exit code 2) naming the option and the allowed words.
/// </summary>
/// <remarks>
/// Read it with <see cref="Read"/>, which gives <see cref="DefaultValue"/> when the option is absent.
/// No <c>DefaultValueFactory</c> is set because System.CommandLine's help prints a default with
/// <c>ToString()</c> (the enum member, "Merged"); the description carries "[default: merged]" instead.
/// </remarks>
internal sealed class ChoiceOption<T> : Option<T>
{
    private readonly (string Word, T Value)[] _choices;

    public ChoiceOption(string name, string description, T defaultValue, params (string Word, T Value)[] choices)
        : base(name)
    {
        _choices = choices;
        DefaultValue = defaultValue;
        string[] words = choices.Select(c => c.Word).ToArray();
        Words = words;
        Description = $"{description} [default: {WordFor(defaultValue)}]";
        Arity = ArgumentArity.ExactlyOne;
        CustomParser = result =>
        {
            string word = result.Tokens.Count == 1 ? result.Tokens[0].Value : "";
            foreach (var (w, value) in _choices)
            {
                if (string.Equals(w, word, StringComparison.Ordinal))
                {
                    return value;
                }
            }
            result.AddError($"{name} must be one of {string.Join(", ", words)}; got '{word}'.");
            return defaultValue;
        };
        CompletionSources.Clear();
        CompletionSources.Add(words);
    }

    /// <summary>The value used when the option is not given.</summary>
    public T DefaultValue { get; }

    /// <summary>The accepted words, in the order help lists them.</summary>
    public IReadOnlyList<string> Words { get; }

    /// <summary>The parsed value, or <see cref="DefaultValue"/> when the option was not given.</summary>
    /// <remarks>
    /// Maps the word itself rather than calling <c>GetValue</c>: System.CommandLine cannot convert a parsed
    /// null (e.g. <c>--dtype keep</c> for a <c>DType?</c>) back to a nullable value type.
    /// </remarks>
    public T Read(ParseResult parse)
    {
        var result = parse.GetResult(this);
        if (result is null || result.Tokens.Count != 1)
        {
            return DefaultValue;
        }
        string word = result.Tokens[0].Value;
        foreach (var (w, value) in _choices)
        {
            if (string.Equals(w, word, StringComparison.Ordinal))
            {
                return value;
            }
        }
        return DefaultValue;
    }

    /// <summary>The word that stands for <paramref name="value"/>.</summary>
    public string WordFor(T value) =>
        _choices.First(c => EqualityComparer<T>.Default.Equals(c.Value, value)).Word;
}
