using OnnxLora.Core;

namespace OnnxLora.Merge.Onnx.Internals;

/// <summary>
/// Errors of a merge into an ONNX model: thin names over <see cref="OnnxLoraException"/>'s factories.
/// Messages name the model file, the adapter module or initializer, what was found and what was
/// expected, and list candidates.
/// </summary>
internal static class OnnxMergeThrow
{
    private const int MaxListed = 12;

    public static OnnxLoraException Invalid(string model, string what, string found, string expected) =>
        OnnxLoraException.Invalid(model, what, found, expected);

    public static OnnxLoraException Invalid(string model, string message) => OnnxLoraException.Invalid(model, message);

    public static OnnxLoraException Ambiguous(string model, string what, string how, IEnumerable<string> candidates) =>
        OnnxLoraException.Invalid(model, $"{what} maps to several initializers by {how}: {List(candidates)}; expected exactly one.");

    /// <summary>No initializer found: <paramref name="tried"/> lists the ways tried, <paramref name="advice"/> what to check next.</summary>
    public static OnnxLoraException Unmapped(string model, string what, string tried, IEnumerable<string> candidates, string advice)
    {
        string listed = List(candidates);
        return OnnxLoraException.Invalid(model, $"{what} maps to no initializer: {tried}. Candidates: {(listed.Length == 0 ? "none" : listed)}. {advice}");
    }

    public static OnnxLoraException SharedInitializer(string model, string initializer, string first, string second) =>
        OnnxLoraException.Invalid(model, $"initializer '{initializer}' is the target of both {first} and {second}; expected each initializer to be updated for one parameter (tied weights cannot be merged per module).");

    public static OnnxLoraException NonFinite(string model, string initializer, long index, float value, string stage) =>
        OnnxLoraException.Invalid(model, OnnxLoraException.Describe("", $"initializer '{initializer}'", $"{value} at element {index} {stage}", "finite values (safe mode)")
            + " Check the adapter for NaN/Inf or turn safe mode off to write it anyway.");

    public static OnnxLoraException Option(string name, string message) => OnnxLoraException.InvalidOption(name, message);

    /// <summary>Sorted, distinct, at most a dozen, with a count of the rest.</summary>
    public static string List(IEnumerable<string> items)
    {
        var all = items.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();
        string head = string.Join(", ", all.Take(MaxListed));
        return all.Count > MaxListed ? $"{head} and {all.Count - MaxListed} more" : head;
    }
}
