namespace OnnxLora.Core.Internals;

/// <summary>
/// The one place Core's malformed-input errors are raised. Every message names the file, the
/// tensor or field, what was found and what was expected.
/// </summary>
internal static class FormatThrow
{
    public static InvalidDataException Invalid(string file, string what, string found, string expected) =>
        new($"{file}: {what}: found {found}, expected {expected}.");

    public static InvalidDataException Invalid(string file, string message) => new($"{file}: {message}");

    public static InvalidDataException Invalid(string file, string message, Exception inner) => new($"{file}: {message}", inner);
}
