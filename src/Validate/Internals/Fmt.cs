using System.Globalization;

namespace OnnxLora.Validate.Internals;

/// <summary>Number formatting shared by the Markdown and HTML reports (invariant culture).</summary>
internal static class Fmt
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    /// <summary>An error magnitude: "0", "3.21e-05", "NaN".</summary>
    public static string Err(double v) => double.IsNaN(v) ? "NaN" : v == 0 ? "0" : v.ToString("0.00e+00", Inv);

    public static string Ms(double v) => double.IsNaN(v) ? "–" : v.ToString(v < 10 ? "0.000" : "0.0", Inv);

    public static string Ratio(double v) => double.IsNaN(v) ? "–" : v.ToString("0.000", Inv);

    public static string Share(double v) => (v * 100).ToString("0.00", Inv) + "%";

    public static string Cos(double v) => v.ToString("0.000000", Inv);

    public static string Num(double v) => v.ToString("G6", Inv);

    public static string Int(long v) => v.ToString("N0", Inv);

    public static string Rate(double v) => double.IsNaN(v) || double.IsInfinity(v) ? "–" : v.ToString(v < 100 ? "0.0" : "N0", Inv);

    public static string Bytes(long? bytes)
    {
        if (bytes is not long b)
        {
            return "–";
        }
        string[] units = ["B", "KiB", "MiB", "GiB", "TiB"];
        double v = Math.Abs((double)b);
        int u = 0;
        while (v >= 1024 && u < units.Length - 1)
        {
            v /= 1024;
            u++;
        }
        return (b < 0 ? "-" : "") + v.ToString(u == 0 ? "0" : "0.0", Inv) + " " + units[u];
    }

    public static string Shape(IEnumerable<long> shape) => "[" + string.Join(", ", shape.Select(d => d.ToString(Inv))) + "]";

    public static string Role(ModelRole role) => role.ToString().ToLowerInvariant();

    /// <summary>An enum value as the JSON report spells it ("gateFailed", "all").</summary>
    public static string Camel(Enum value) => System.Text.Json.JsonNamingPolicy.CamelCase.ConvertName(value.ToString());

    /// <summary>A verdict in words: "no significant change", "regression".</summary>
    public static string Verdict(LatencyVerdict v) => v switch
    {
        LatencyVerdict.Baseline => "baseline",
        LatencyVerdict.NoBaseline => "no baseline",
        LatencyVerdict.NoSignificantChange => "no significant change",
        LatencyVerdict.Faster => "faster",
        LatencyVerdict.Slower => "slower",
        _ => "regression",
    };

    /// <summary>A ratio as a signed change in percent: 1.1 → "+10.0%".</summary>
    public static string Change(double ratio) => double.IsNaN(ratio) ? "–" : ((ratio - 1) * 100).ToString("+0.0;-0.0;0.0", Inv) + "%";

    public static string Status(ValidationStatus s) => s == ValidationStatus.Pass ? "PASS" : "FAIL";
}
