using System.Globalization;

namespace OnnxLora.Models.Internals;

/// <summary>
/// The one place Training's model and LoRA errors are raised. Messages name the file or module,
/// the tensor or field, what was found and what was expected.
/// </summary>
internal static class ModelThrow
{
    public static InvalidDataException Invalid(string source, string what, string found, string expected) =>
        new($"{source}: {what}: found {found}, expected {expected}.");

    /// <summary>One error listing every problem, one per line.</summary>
    public static InvalidDataException InvalidMany(string source, string summary, IReadOnlyList<string> problems) =>
        new($"{source}: {summary} ({problems.Count} problem{(problems.Count == 1 ? "" : "s")}):{Environment.NewLine}  "
            + string.Join(Environment.NewLine + "  ", problems));

    public static ArgumentException Argument(string paramName, string what, string found, string expected) =>
        new($"{what}: found {found}, expected {expected}.", paramName);

    public static ArgumentException Argument(string paramName, string message) => new(message, paramName);

    public static string Shape(IEnumerable<long> shape) => "[" + string.Join(", ", shape.Select(d => d.ToString(CultureInfo.InvariantCulture))) + "]";
}
