using System.Globalization;
using OnnxLora.Core;

namespace OnnxLora.Models.Internals;

/// <summary>
/// Training's model and LoRA errors: thin names over <see cref="OnnxLoraException"/>'s factories. Messages
/// name the file or module, the tensor or field, what was found and what was expected.
/// </summary>
internal static class ModelThrow
{
    public static OnnxLoraException Invalid(string source, string what, string found, string expected) =>
        OnnxLoraException.Invalid(source, what, found, expected);

    /// <summary>One error listing every problem, one per line.</summary>
    public static OnnxLoraException InvalidMany(string source, string summary, IReadOnlyList<string> problems) =>
        OnnxLoraException.Invalid(source, $"{summary} ({problems.Count} problem{(problems.Count == 1 ? "" : "s")}):{Environment.NewLine}  "
            + string.Join(Environment.NewLine + "  ", problems));

    /// <summary>
    /// A value the user controls (LoRA options and targets, token ids, sequence lengths, dtypes) that the model
    /// cannot take: bad input, whatever API it reached us through.
    /// </summary>
    public static OnnxLoraException Argument(string paramName, string what, string found, string expected) =>
        OnnxLoraException.Invalid("", what, found, expected);

    /// <summary>As above, with a free-form message (the parameter name is not shown: the message names the value).</summary>
    public static OnnxLoraException Argument(string paramName, string message) => OnnxLoraException.Invalid("", message);

    /// <summary>Our own code called a model API with arguments that do not fit: a bug, not the user's input.</summary>
    public static ArgumentException Misuse(string paramName, string what, string found, string expected) =>
        new(OnnxLoraException.Describe("", what, found, expected), paramName);

    /// <summary>As above, with a free-form message.</summary>
    public static ArgumentException Misuse(string paramName, string message) => new(message, paramName);

    public static string Shape(IEnumerable<long> shape) => "[" + string.Join(", ", shape.Select(d => d.ToString(CultureInfo.InvariantCulture))) + "]";
}
