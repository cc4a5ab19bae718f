using OnnxLora.Core;

namespace OnnxLora.Merge.Internals;

/// <summary>
/// Merge errors: thin names over <see cref="OnnxLoraException"/>'s factories. Messages name the file or
/// folder, the tensor or module, what was found and what was expected.
/// </summary>
internal static class MergeThrow
{
    public static OnnxLoraException Invalid(string where, string what, string found, string expected) =>
        OnnxLoraException.Invalid(where, what, found, expected);

    public static OnnxLoraException Invalid(string where, string message) => OnnxLoraException.Invalid(where, message);

    public static OnnxLoraException NonFinite(string where, string tensor, long index, float value, string stage) =>
        OnnxLoraException.Invalid(where, OnnxLoraException.Describe("", $"tensor '{tensor}'", $"{value} at element {index} {stage}", "finite values (safe mode)")
            + " Check the adapter for NaN/Inf or pass unsafe mode to write it anyway.");

    public static OnnxLoraException Option(string name, string message) => OnnxLoraException.InvalidOption(name, message);

    public static OnnxLoraException Option(string name, string found, string expected) => OnnxLoraException.InvalidOption(name, found, expected);
}
