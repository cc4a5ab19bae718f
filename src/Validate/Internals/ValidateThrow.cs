using OnnxLora.Core;

namespace OnnxLora.Validate.Internals;

/// <summary>
/// Validate's errors: thin names over <see cref="OnnxLoraException"/>'s factories. Messages name the file (or
/// option), the input/output/field, what was found and what was expected.
/// </summary>
internal static class ValidateThrow
{
    public static OnnxLoraException Invalid(string file, string what, string found, string expected) =>
        OnnxLoraException.Invalid(file, what, found, expected);

    public static OnnxLoraException Invalid(string file, string message) => OnnxLoraException.Invalid(file, message);

    public static OnnxLoraException Invalid(string file, string message, Exception inner) => OnnxLoraException.Invalid(file, message, inner);

    public static OnnxLoraException Option(string option, string found, string expected) =>
        OnnxLoraException.InvalidOption(option, found, expected);

    public static OnnxLoraException ModelNotFound(string role, string path) => OnnxLoraException.NotFound($"{role} model", path);

    public static OnnxLoraException InputFileNotFound(string path) => OnnxLoraException.NotFound("input file", path);

    /// <summary>CUDA was required (fallback disabled) and could not be used: the user's device or option, so bad input.</summary>
    public static OnnxLoraException ProviderUnavailable(int deviceId, string reason, Exception inner) =>
        OnnxLoraException.Invalid("", $"CUDA execution provider (device {deviceId}) could not be used and CPU fallback is disabled: {reason}", inner);

    public static OnnxLoraException MissingInput(string model, string input, string supplied) =>
        OnnxLoraException.Invalid(model, $"input {input}: not supplied; the input files supply {supplied}.");
}
