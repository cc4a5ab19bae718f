using System.Text.RegularExpressions;

namespace OnnxLora.Core.Peft;

/// <summary>How <see cref="TargetModules"/> selects modules.</summary>
public enum TargetModulesKind
{
    /// <summary>A list of names: a module matches when its path equals a name or ends with "." + name.</summary>
    List,

    /// <summary>A regular expression that must match the whole module path (Python's <c>re.fullmatch</c>).</summary>
    Regex,

    /// <summary>The "all-linear" shorthand: every linear layer except the output head.</summary>
    AllLinear,
}

/// <summary>
/// PEFT's <c>target_modules</c>: a list of names, a regex string, or "all-linear". Matching follows
/// PEFT: list entries match the whole path or a dotted suffix of it; a regex must match the whole path.
/// </summary>
public sealed class TargetModules : IEquatable<TargetModules>
{
    private readonly Regex? _regex;

    private TargetModules(TargetModulesKind kind, IReadOnlyList<string> names, string? pattern, Regex? regex)
    {
        Kind = kind;
        Names = names;
        Pattern = pattern;
        _regex = regex;
    }

    /// <summary>Which form this is.</summary>
    public TargetModulesKind Kind { get; }

    /// <summary>The names for <see cref="TargetModulesKind.List"/> (empty otherwise).</summary>
    public IReadOnlyList<string> Names { get; }

    /// <summary>The string as written for <see cref="TargetModulesKind.Regex"/> and <see cref="TargetModulesKind.AllLinear"/>.</summary>
    public string? Pattern { get; }

    /// <summary>A list of module names.</summary>
    public static TargetModules FromList(params IEnumerable<string> names) =>
        new(TargetModulesKind.List, names.ToArray(), null, null);

    /// <summary>A regex (or "all-linear"); throws <see cref="ArgumentException"/> when the regex does not compile.</summary>
    public static TargetModules FromString(string pattern)
    {
        ArgumentNullException.ThrowIfNull(pattern);
        if (string.Equals(pattern, "all-linear", StringComparison.OrdinalIgnoreCase))
        {
            return new TargetModules(TargetModulesKind.AllLinear, [], pattern, null);
        }
        return new TargetModules(TargetModulesKind.Regex, [], pattern, CompileFull(pattern));
    }

    /// <summary>The "all-linear" shorthand.</summary>
    public static TargetModules AllLinear { get; } = new(TargetModulesKind.AllLinear, [], "all-linear", null);

    /// <summary>
    /// True when the module at <paramref name="modulePath"/> is selected. For "all-linear" this is
    /// true for every path (whether a module is linear is the model's business).
    /// </summary>
    public bool Matches(string modulePath) => Kind switch
    {
        TargetModulesKind.List => Names.Any(n => modulePath == n || modulePath.EndsWith("." + n, StringComparison.Ordinal)),
        TargetModulesKind.Regex => _regex!.IsMatch(modulePath),
        _ => true,
    };

    internal static Regex CompileFull(string pattern)
    {
        try
        {
            return new(@"\A(?:" + pattern + @")\z", RegexOptions.CultureInvariant, TimeSpan.FromSeconds(1));
        }
        catch (RegexParseException e)
        {
            throw OnnxLoraException.Invalid("target_modules", $"\"{pattern}\" is not a valid regular expression ({e.Error} at offset {e.Offset})", e);
        }
    }

    public bool Equals(TargetModules? other) =>
        other is not null && Kind == other.Kind && Pattern == other.Pattern && Names.SequenceEqual(other.Names);

    public override bool Equals(object? obj) => Equals(obj as TargetModules);

    public override int GetHashCode() => HashCode.Combine(Kind, Pattern, Names.Count);

    public override string ToString() => Kind == TargetModulesKind.List ? "[" + string.Join(", ", Names) + "]" : Pattern!;
}
