namespace OnnxLora.Core.Peft.Internals;

/// <summary>
/// The one place PEFT adapter errors are raised. Messages name the file, the field or tensor key,
/// what was found and what was expected.
/// </summary>
internal static class PeftThrow
{
    public static InvalidDataException Field(string file, string field, string found, string expected) =>
        new($"{file}: {field}: found {found}, expected {expected}.");

    public static InvalidDataException Invalid(string file, string message) => new($"{file}: {message}");

    public static InvalidDataException Invalid(string file, string message, Exception inner) => new($"{file}: {message}", inner);

    public static InvalidDataException Tensor(string file, string key, string found, string expected) =>
        new($"{file}: tensor '{key}': found {found}, expected {expected}.");
}
