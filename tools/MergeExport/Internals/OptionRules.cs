using System.CommandLine;
using System.Globalization;

namespace OnnxLora.MergeExport.Internals;

/// <summary>Validators that turn bad option values into parse errors (exit code 2) with the option's name.</summary>
internal static class OptionRules
{
    public static Option<T> AtLeast<T>(this Option<T> option, T minimum)
        where T : IComparable<T>
    {
        option.Validators.Add(result =>
        {
            T value = result.GetValueOrDefault<T>();
            if (value.CompareTo(minimum) < 0)
            {
                result.AddError($"{option.Name} must be at least {Convert.ToString(minimum, CultureInfo.InvariantCulture)}; got {Convert.ToString(value, CultureInfo.InvariantCulture)}.");
            }
        });
        return option;
    }

    public static Option<double> Finite(this Option<double> option, double minimum, double maximum = double.MaxValue)
    {
        option.Validators.Add(result =>
        {
            double value = result.GetValueOrDefault<double>();
            if (!double.IsFinite(value) || value < minimum || value > maximum)
            {
                string range = maximum == double.MaxValue ? $"a finite number >= {minimum.ToString(CultureInfo.InvariantCulture)}" : $"a number in [{minimum.ToString(CultureInfo.InvariantCulture)}, {maximum.ToString(CultureInfo.InvariantCulture)}]";
                result.AddError($"{option.Name} must be {range}; got {value.ToString(CultureInfo.InvariantCulture)}.");
            }
        });
        return option;
    }

    public static Option<double?> Finite(this Option<double?> option, double minimum)
    {
        option.Validators.Add(result =>
        {
            double? value = result.GetValueOrDefault<double?>();
            if (value is { } v && (!double.IsFinite(v) || v < minimum))
            {
                result.AddError($"{option.Name} must be a finite number >= {minimum.ToString(CultureInfo.InvariantCulture)}; got {v.ToString(CultureInfo.InvariantCulture)}.");
            }
        });
        return option;
    }
}
