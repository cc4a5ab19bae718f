using System.Diagnostics.CodeAnalysis;
using System.Text.RegularExpressions;
using OnnxLora.Core.Peft;

namespace OnnxLora.MergeExport.Internals;

/// <summary>
/// Parses <c>--targets</c> into PEFT's <see cref="TargetModules"/> (Core's one target_modules type). The rule (also in <see cref="Help"/> and the README):
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
internal static class TargetsArgument
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

    /// <summary>Reads the values of every --targets occurrence, in order; <paramref name="error"/> says what is wrong otherwise.</summary>
    public static bool TryParse(IReadOnlyList<string> values, [NotNullWhen(true)] out TargetModules? targets, [NotNullWhen(false)] out string? error)
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
            targets = TargetModules.FromString(regexes[0]);
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
            targets = TargetModules.AllLinear;
            error = null;
            return true;
        }
        targets = TargetModules.FromList(names);
        error = null;
        return true;
    }
}
