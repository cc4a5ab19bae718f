namespace OnnxLora.Merge.Internals;

/// <summary>
/// The one place merge errors are raised. Messages name the file or folder, the tensor or module,
/// what was found and what was expected.
/// </summary>
internal static class MergeThrow
{
    public static InvalidDataException Invalid(string where, string what, string found, string expected) =>
        new($"{where}: {what}: found {found}, expected {expected}.");

    public static InvalidDataException Invalid(string where, string message) => new($"{where}: {message}");

    public static InvalidDataException NonFinite(string where, string tensor, long index, float value, string stage) =>
        new($"{where}: tensor '{tensor}': found {value} at element {index} {stage}, expected finite values (safe mode). Check the adapter for NaN/Inf or pass unsafe mode to write it anyway.");

    public static ArgumentException Option(string name, string message) => new($"{name}: {message}", name);
}
