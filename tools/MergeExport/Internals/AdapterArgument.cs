using System.Globalization;
using OnnxLora.Core;
using OnnxLora.Core.Peft;
using OnnxLora.Merge;

namespace OnnxLora.MergeExport.Internals;

/// <summary>Parses "--adapter DIR[=WEIGHT]" values and opens them.</summary>
internal static class AdapterArgument
{
    public static (string Directory, double Weight) Parse(string value)
    {
        int eq = value.LastIndexOf('=');
        if (eq > 0 && double.TryParse(value[(eq + 1)..], NumberStyles.Float, CultureInfo.InvariantCulture, out double w))
        {
            if (!double.IsFinite(w))
            {
                throw OnnxLoraException.InvalidOption("--adapter", $"{value}: the weight must be a finite number.");
            }
            return (value[..eq], w);
        }
        return (value, 1.0);
    }

    /// <summary>Loads every adapter; the caller disposes them (see <see cref="DisposeAll"/>).</summary>
    public static List<WeightedAdapter> LoadAll(IEnumerable<string> values)
    {
        var list = new List<WeightedAdapter>();
        try
        {
            foreach (string v in values)
            {
                var (dir, weight) = Parse(v);
                list.Add(new WeightedAdapter(PeftAdapter.Load(dir), weight));
            }
            return list;
        }
        catch
        {
            DisposeAll(list);
            throw;
        }
    }

    public static void DisposeAll(IEnumerable<WeightedAdapter> adapters)
    {
        foreach (var a in adapters)
        {
            a.Adapter.Dispose();
        }
    }
}
