using System.Diagnostics.CodeAnalysis;
using System.Text.RegularExpressions;

namespace OnnxLora.MergeExport.Internals;

/// <summary>How <c>--targets</c> chose the modules to adapt.</summary>
internal enum TargetsKind
{
    /// <summary>Module names (PEFT's list form): a module matches when its path is a name or ends with "." + name.</summary>
    Names,

    /// <summary>One regular expression that must match a whole module path (PEFT's string form).</summary>
    Regex,

    /// <summary>Every Linear except the output head (PEFT's "all-linear").</summary>
    AllLinear,
}

/// <summary>
/// The values of <c>--targets</c>. The rule (also in <see cref="Help"/> and the README):
/// <list type="number">
/// <item>A value containing a regular-expression metacharacter other than '.' (<see cref="RegexCharacters"/>)
/// is one full-match regex over module paths, taken whole (commas included); it must be the only value.</item>
/// <item>Every other value is a comma-separated list of module names; values given space-separated or by
/// repeating the option add up. A name is letters, digits, '_' and '-', or a dotted path suffix of such
/// parts (<c>self_attn.q_proj</c>).</item>
/// <item><c>all-linear</c>, alone, is every Linear except the output head.</item>
/// </list>
/// '.' does not make a regex: it is the path separator of dotted names, and module names never contain the
/// other metacharacters, so every value falls under exactly one case.
/// </summary>
internal sealed record TargetsArgument
{
    /// <summary>The characters that make a value a regex.</summary>
    public const string RegexCharacters = @"\^$*+?()[]{}|";

    /// <summary>The rule as --help states it.</summary>
    public const string Help =
        "Modules to adapt (PEFT target_modules). Names, comma- or space-separated or repeated (q_proj,v_proj), each matching modules " +
        "whose path is the name or ends with '.'+name (self_attn.q_proj works too); all-linear; or one value containing a regex " +
        @"character other than '.' (\ ^ $ * + ? ( ) [ ] { } |), used whole as a full-match regex over module paths " +
        @"(model\.layers\.[01]\..*_proj). Default: q_proj,v_proj (query,value for BERT).";

    private static readonly string RegexCharactersText = string.Join(' ', RegexCharacters.ToCharArray());

    private static readonly Regex NamePattern = new(@"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$", RegexOptions.CultureInvariant);

    private TargetsArgument(TargetsKind kind, IReadOnlyList<string> names, string? pattern)
    {
        Kind = kind;
        Names = names;
        Pattern = pattern;
    }

    public TargetsKind Kind { get; }

    /// <summary>The names, in the order given, without repeats, for <see cref="TargetsKind.Names"/>; empty otherwise.</summary>
    public IReadOnlyList<string> Names { get; }

    /// <summary>The expression for <see cref="TargetsKind.Regex"/>; null otherwise.</summary>
    public string? Pattern { get; }

    /// <summary>Reads the values of every --targets occurrence, in order; <paramref name="error"/> says what is wrong otherwise.</summary>
    public static bool TryParse(IReadOnlyList<string> values, [NotNullWhen(true)] out TargetsArgument? targets, [NotNullWhen(false)] out string? error)
    {
        targets = null;
        var regexes = values.Where(v => v.AsSpan().IndexOfAny(RegexCharacters) >= 0).ToList();
        if (regexes.Count > 0)
        {
            if (values.Count > 1)
            {
                error = $"--targets '{regexes[0]}' is a regex (it has one of {RegexCharactersText}) and must be the only value; got {values.Count} values ({string.Join(" ", values.Select(v => $"'{v}'"))}).";
                return false;
            }
            try
            {
                _ = new Regex(regexes[0], RegexOptions.CultureInvariant, TimeSpan.FromSeconds(1));
            }
            catch (ArgumentException e)
            {
                error = $"--targets '{regexes[0]}' is not a valid regular expression: {e.Message}";
                return false;
            }
            targets = new TargetsArgument(TargetsKind.Regex, [], regexes[0]);
            error = null;
            return true;
        }

        var names = new List<string>();
        foreach (string value in values)
        {
            foreach (string name in value.Split(','))
            {
                if (!NamePattern.IsMatch(name))
                {
                    error = $"--targets '{value}': {(name.Length == 0 ? "an empty name" : $"'{name}' is not a module name")}; expected names of letters, digits, '_' and '-' " +
                        $"(dotted for a path suffix) separated by commas, all-linear, or one regex with one of {RegexCharactersText}.";
                    return false;
                }
                if (!names.Contains(name, StringComparer.Ordinal))
                {
                    names.Add(name);
                }
            }
        }
        if (names.Contains("all-linear", StringComparer.Ordinal))
        {
            if (names.Count > 1)
            {
                error = $"--targets all-linear stands alone; got it with {string.Join(", ", names.Where(n => n != "all-linear"))}.";
                return false;
            }
            targets = new TargetsArgument(TargetsKind.AllLinear, [], null);
            error = null;
            return true;
        }
        targets = new TargetsArgument(TargetsKind.Names, names, null);
        error = null;
        return true;
    }

    /// <summary>
    /// The trainer's list form (<c>TrainerOptions.Targets</c>): ["all-linear"]; one entry with regex
    /// characters for a regex; names otherwise. A single dotted name would read there as a regex, so it
    /// goes as the equivalent regex <c>(.*\.)?self_attn\.q_proj</c> (PEFT's suffix rule spelled out).
    /// </summary>
    public IReadOnlyList<string> ToTrainerTargets() => Kind switch
    {
        TargetsKind.AllLinear => ["all-linear"],
        TargetsKind.Regex => [Pattern!],
        _ when Names is [var single] && single.Contains('.', StringComparison.Ordinal) => [@"(.*\.)?" + Regex.Escape(single)],
        _ => Names,
    };
}
