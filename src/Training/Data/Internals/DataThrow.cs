namespace OnnxLora.Training.Data.Internals;

/// <summary>
/// The one place the data readers raise errors. Messages name the file, the line or field, what was
/// found and what was expected.
/// </summary>
internal static class DataThrow
{
    public static InvalidDataException Line(string file, int line, string what, string found, string expected) =>
        new($"{file}: line {line}: {what}: found {found}, expected {expected}.");

    public static InvalidDataException Line(string file, int line, string message) =>
        new($"{file}: line {line}: {message}");

    public static InvalidDataException Line(string file, int line, string message, Exception inner) =>
        new($"{file}: line {line}: {message}", inner);

    public static InvalidDataException Field(string file, string field, string found, string expected) =>
        new($"{file}: {field}: found {found}, expected {expected}.");

    public static InvalidDataException File(string file, string message) => new($"{file}: {message}");

    public static InvalidDataException File(string file, string message, Exception inner) => new($"{file}: {message}", inner);
}
