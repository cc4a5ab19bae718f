using OnnxLora.Core;

namespace OnnxLora.Training.Data.Internals;

/// <summary>
/// The data readers' errors: thin names over <see cref="OnnxLoraException"/>'s factories. Messages name the
/// file, the line or field, what was found and what was expected.
/// </summary>
internal static class DataThrow
{
    public static OnnxLoraException Line(string file, int line, string what, string found, string expected) =>
        OnnxLoraException.Invalid(file, $"line {line}: {what}", found, expected);

    public static OnnxLoraException Line(string file, int line, string message) =>
        OnnxLoraException.Invalid(file, $"line {line}: {message}");

    public static OnnxLoraException Line(string file, int line, string message, Exception inner) =>
        OnnxLoraException.Invalid(file, $"line {line}: {message}", inner);

    public static OnnxLoraException Field(string file, string field, string found, string expected) =>
        OnnxLoraException.Invalid(file, field, found, expected);

    public static OnnxLoraException File(string file, string message) => OnnxLoraException.Invalid(file, message);

    public static OnnxLoraException File(string file, string message, Exception inner) => OnnxLoraException.Invalid(file, message, inner);

    public static OnnxLoraException Option(string option, string found, string expected) => OnnxLoraException.InvalidOption(option, found, expected);
}
