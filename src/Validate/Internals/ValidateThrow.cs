namespace OnnxLora.Validate.Internals;

/// <summary>
/// The one place Validate's errors are raised. Messages name the file (or option), the input/output/field,
/// what was found and what was expected.
/// </summary>
internal static class ValidateThrow
{
    public static InvalidDataException Invalid(string file, string what, string found, string expected) =>
        new($"{file}: {what}: found {found}, expected {expected}.");

    public static InvalidDataException Invalid(string file, string message) => new($"{file}: {message}");

    public static InvalidDataException Invalid(string file, string message, Exception inner) => new($"{file}: {message}", inner);

    public static ArgumentException Option(string option, string found, string expected) =>
        new($"option {option}: found {found}, expected {expected}.", option);

    public static FileNotFoundException ModelNotFound(string role, string path) =>
        new($"{role} model not found: {path}", path);

    public static FileNotFoundException InputFileNotFound(string path) =>
        new($"input file not found: {path}", path);

    public static ExecutionProviderException ProviderUnavailable(int deviceId, string reason, Exception inner) =>
        new($"CUDA execution provider (device {deviceId}) could not be used and CPU fallback is disabled: {reason}", inner);

    public static ArgumentException MissingInput(string model, string input, string supplied) =>
        new($"{model}: input {input}: not supplied; the input files supply {supplied}.");
}
