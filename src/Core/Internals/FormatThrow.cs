namespace OnnxLora.Core.Internals;

/// <summary>
/// Core's malformed-input errors: thin names over <see cref="OnnxLoraException"/>'s factories, so every
/// message names the file, the tensor or field, what was found and what was expected.
/// </summary>
internal static class FormatThrow
{
    public static OnnxLoraException Invalid(string file, string what, string found, string expected) =>
        OnnxLoraException.Invalid(file, what, found, expected);

    public static OnnxLoraException Invalid(string file, string message) => OnnxLoraException.Invalid(file, message);

    public static OnnxLoraException Invalid(string file, string message, Exception inner) => OnnxLoraException.Invalid(file, message, inner);
}
