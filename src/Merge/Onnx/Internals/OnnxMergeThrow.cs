namespace OnnxLora.Merge.Onnx.Internals;

/// <summary>
/// The one place errors of a merge into an ONNX model are raised. Messages name the model file, the
/// adapter module or initializer, what was found and what was expected, and list candidates.
/// </summary>
internal static class OnnxMergeThrow
{
    private const int MaxListed = 12;

    public static InvalidDataException Invalid(string model, string what, string found, string expected) =>
        new($"{model}: {what}: found {found}, expected {expected}.");

    public static InvalidDataException Invalid(string model, string message) => new($"{model}: {message}");

    public static InvalidDataException Ambiguous(string model, string what, string how, IEnumerable<string> candidates) =>
        new($"{model}: {what} maps to several initializers by {how}: {List(candidates)}; expected exactly one.");

    /// <summary>No initializer found: <paramref name="tried"/> lists the ways tried, <paramref name="advice"/> what to check next.</summary>
    public static InvalidDataException Unmapped(string model, string what, string tried, IEnumerable<string> candidates, string advice)
    {
        string listed = List(candidates);
        return new($"{model}: {what} maps to no initializer: {tried}. Candidates: {(listed.Length == 0 ? "none" : listed)}. {advice}");
    }

    public static InvalidDataException SharedInitializer(string model, string initializer, string first, string second) =>
        new($"{model}: initializer '{initializer}' is the target of both {first} and {second}; expected each initializer to be updated for one parameter (tied weights cannot be merged per module).");

    public static InvalidDataException NonFinite(string model, string initializer, long index, float value, string stage) =>
        new($"{model}: initializer '{initializer}': found {value} at element {index} {stage}, expected finite values (safe mode). Check the adapter for NaN/Inf or turn safe mode off to write it anyway.");

    public static ArgumentException Option(string name, string message) => new($"{name}: {message}", name);

    /// <summary>Sorted, distinct, at most a dozen, with a count of the rest.</summary>
    public static string List(IEnumerable<string> items)
    {
        var all = items.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();
        string head = string.Join(", ", all.Take(MaxListed));
        return all.Count > MaxListed ? $"{head} and {all.Count - MaxListed} more" : head;
    }
}
