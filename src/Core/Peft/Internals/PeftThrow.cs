namespace OnnxLora.Core.Peft.Internals;

/// <summary>
/// PEFT adapter errors: thin names over <see cref="OnnxLoraException"/>'s factories. Messages name the
/// file, the field or tensor key, what was found and what was expected.
/// </summary>
internal static class PeftThrow
{
    public static OnnxLoraException Field(string file, string field, string found, string expected) =>
        OnnxLoraException.Invalid(file, field, found, expected);

    public static OnnxLoraException Invalid(string file, string message) => OnnxLoraException.Invalid(file, message);

    public static OnnxLoraException Invalid(string file, string message, Exception inner) => OnnxLoraException.Invalid(file, message, inner);

    public static OnnxLoraException Tensor(string file, string key, string found, string expected) =>
        OnnxLoraException.Invalid(file, $"tensor '{key}'", found, expected);
}
