using System.CommandLine;
using System.Globalization;

namespace OnnxLora.MergeExport.Internals;

/// <summary>
/// An option that takes a percentage (<c>--max-regression 5%</c>; the % sign is optional, so <c>5</c> is 5% too)
/// and reads as a fraction (0.05), or null when absent. A value that is not a finite number ≥ 0 is a parse
/// error (exit code 2) naming the option.
/// </summary>
internal sealed class PercentOption : Option<double?>
{
    public PercentOption(string name, string description)
        : base(name)
    {
        Description = description;
        Arity = ArgumentArity.ExactlyOne;
        CustomParser = result =>
        {
            string word = result.Tokens.Count == 1 ? result.Tokens[0].Value : "";
            if (TryParse(word, out double fraction))
            {
                return fraction;
            }
            result.AddError($"{name} must be a percentage >= 0 such as 5% (or 5); got '{word}'.");
            return null;
        };
    }

    /// <summary>"5%", "5", "2.5 %" → 0.05, 0.05, 0.025.</summary>
    public static bool TryParse(string text, out double fraction)
    {
        string number = text.Trim();
        if (number.EndsWith('%'))
        {
            number = number[..^1].TrimEnd();
        }
        fraction = double.NaN;
        if (!double.TryParse(number, NumberStyles.Float, CultureInfo.InvariantCulture, out double percent) || !double.IsFinite(percent) || percent < 0)
        {
            return false;
        }
        fraction = percent / 100;
        return true;
    }
}
