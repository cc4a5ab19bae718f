using System.Globalization;
using System.Text;

namespace OnnxLora.MergeExport.Build.Internals;

/// <summary>
/// One LoraMergeExport item, resolved: full paths and validated gate settings, the
/// <c>merge-export run</c> arguments it becomes, and the stamp text whose change forces a re-run.
/// <see cref="BaselineReport"/> is the full path of an existing report (null when none is set or the file is
/// missing); <see cref="MaxRegression"/> is kept as written ("5%"). <see cref="OnnxAdapterPath"/> and
/// <see cref="AdaptersModelPath"/> are where the run's <c>.onnx_adapter</c> and adapter-ready graph are copied (null: not kept).
/// <see cref="GraphOptimization"/> (one of <see cref="GraphOptimizationLevels"/>; null: the tool's default, all) and
/// <see cref="CpuMemArena"/> (false: the CPU memory arena off) are ONNX Runtime session options of the validation.
/// </summary>
internal sealed record ExportSettings(
    string Adapter,
    string AdapterPath,
    string ModelPath,
    string OutputPath,
    string ReportDirectory,
    bool Validate,
    string? Atol,
    string? Rtol,
    string? MinTop1,
    string? MaxLatencyRatio,
    string? BaselineReport = null,
    string? MaxRegression = null,
    bool AllowDifferentMachines = false,
    string? OnnxAdapterPath = null,
    string? AdaptersModelPath = null,
    string? GraphOptimization = null,
    bool CpuMemArena = true)
{
    /// <summary>The words <c>merge-export --graph-optimization</c> takes (lowercase only, as the tool reads them).</summary>
    public static readonly IReadOnlyList<string> GraphOptimizationLevels = ["all", "extended", "basic", "none"];

    /// <summary>The item metadata names, as written in project files.</summary>
    public static class Metadata
    {
        public const string Model = "Model";
        /// <summary>Not "Output": MSBuild reserves that metadata name (MSB4118).</summary>
        public const string OutputFile = "OutputFile";
        public const string ReportDir = "ReportDir";
        public const string Validate = "Validate";
        public const string Atol = "Atol";
        public const string Rtol = "Rtol";
        public const string MinTop1 = "MinTop1";
        public const string MaxLatencyRatio = "MaxLatencyRatio";
        public const string BaselineReport = "BaselineReport";
        public const string MaxRegression = "MaxRegression";
        public const string AllowDifferentMachines = "AllowDifferentMachines";
        /// <summary>Where the adapter's ONNX Runtime adapter file (.onnx_adapter) goes; empty: not kept.</summary>
        public const string OnnxAdapterFile = "OnnxAdapterFile";
        /// <summary>Where the adapter-ready graph (LoRA factors as inputs) that the .onnx_adapter fits goes; empty: not kept.</summary>
        public const string AdaptersModelFile = "AdaptersModelFile";
        /// <summary>ONNX Runtime's graph optimisation level of the validation sessions: all, extended, basic or none; empty: the tool's default.</summary>
        public const string GraphOptimization = "GraphOptimization";
        /// <summary>ONNX Runtime's CPU memory arena of the validation sessions: true (default) or false.</summary>
        public const string CpuMemArena = "CpuMemArena";
    }

    /// <summary>The arguments of <c>merge-export run</c> for this item, writing into <paramref name="outDirectory"/>.</summary>
    public IReadOnlyList<string> ToolArguments(string outDirectory)
    {
        var args = new List<string>
        {
            "run", "--model", ModelPath, "--adapter", AdapterPath, "--out", outDirectory, "--json", "--force",
        };
        if (!Validate)
        {
            args.Add("--no-validate");
        }
        AddIfSet(args, "--atol", Atol);
        AddIfSet(args, "--rtol", Rtol);
        AddIfSet(args, "--min-top1", MinTop1);
        AddIfSet(args, "--max-latency-ratio", MaxLatencyRatio);
        AddIfSet(args, "--graph-optimization", GraphOptimization);
        if (!CpuMemArena)
        {
            args.Add("--no-cpu-mem-arena");
        }
        if (Validate && BaselineReport is not null)
        {
            args.Add("--baseline");
            args.Add(BaselineReport);
            AddIfSet(args, "--max-regression", MaxRegression);
            if (AllowDifferentMachines)
            {
                args.Add("--allow-different-machines");
            }
        }
        return args;
    }

    /// <summary>
    /// What the stamp file records: everything besides the input files' contents that changes the
    /// result. A different text rewrites the stamp, which makes the item out of date. Settings added later are
    /// recorded only when set, so that the stamps of items that do not set them stay as they were (no re-run).
    /// </summary>
    public string StampText(string tool)
    {
        var text = new StringBuilder();
        text.Append("tool=").Append(tool).Append('\n');
        text.Append("model=").Append(ModelPath).Append('\n');
        text.Append("adapter=").Append(AdapterPath).Append('\n');
        text.Append("output=").Append(OutputPath).Append('\n');
        text.Append("reports=").Append(ReportDirectory).Append('\n');
        text.Append("validate=").Append(Validate ? "true" : "false").Append('\n');
        text.Append("atol=").Append(Atol).Append('\n');
        text.Append("rtol=").Append(Rtol).Append('\n');
        text.Append("min-top1=").Append(MinTop1).Append('\n');
        text.Append("max-latency-ratio=").Append(MaxLatencyRatio).Append('\n');
        text.Append("baseline=").Append(BaselineReport).Append('\n');
        text.Append("max-regression=").Append(MaxRegression).Append('\n');
        text.Append("allow-different-machines=").Append(AllowDifferentMachines ? "true" : "false").Append('\n');
        text.Append("onnx-adapter=").Append(OnnxAdapterPath).Append('\n');
        text.Append("adapters-model=").Append(AdaptersModelPath).Append('\n');
        if (GraphOptimization is not null)
        {
            text.Append("graph-optimization=").Append(GraphOptimization).Append('\n');
        }
        if (!CpuMemArena)
        {
            text.Append("cpu-mem-arena=false\n");
        }
        return text.ToString();
    }

    /// <summary>Reads Validate: empty means true; otherwise true or false (any case).</summary>
    public static bool TryParseValidate(string text, out bool value) => TryParseBoolean(text, whenEmpty: true, out value);

    /// <summary>Reads a boolean setting: empty means <paramref name="whenEmpty"/>; otherwise true or false (any case).</summary>
    public static bool TryParseBoolean(string text, bool whenEmpty, out bool value)
    {
        text = text.Trim();
        if (text.Length == 0)
        {
            value = whenEmpty;
            return true;
        }
        return bool.TryParse(text, out value);
    }

    /// <summary>
    /// Reads GraphOptimization: empty means not set (the tool's default); otherwise one of
    /// <see cref="GraphOptimizationLevels"/>, lowercase as the tool takes it.
    /// </summary>
    public static bool TryParseGraphOptimization(string text, out string? value)
    {
        text = text.Trim();
        value = null;
        if (text.Length == 0)
        {
            return true;
        }
        if (!GraphOptimizationLevels.Contains(text, StringComparer.Ordinal))
        {
            return false;
        }
        value = text;
        return true;
    }

    /// <summary>
    /// Reads a gate setting: empty means not set (the tool's default); otherwise a finite number in
    /// [<paramref name="min"/>, <paramref name="max"/>] (exclusive of min when <paramref name="minExclusive"/>),
    /// kept as written so the tool sees exactly what the project says.
    /// </summary>
    public static bool TryParseGate(string text, double min, double max, bool minExclusive, out string? value)
    {
        text = text.Trim();
        value = null;
        if (text.Length == 0)
        {
            return true;
        }
        if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double number)
            || !double.IsFinite(number) || number < min || number > max || (minExclusive && number == min))
        {
            return false;
        }
        value = text;
        return true;
    }

    /// <summary>
    /// Reads MaxRegression: empty means not set; otherwise a percentage ≥ 0 with an optional % sign ("5%", "5",
    /// "2.5 %"), kept as written (trimmed) for the tool, which reads it the same way.
    /// </summary>
    public static bool TryParsePercent(string text, out string? value)
    {
        text = text.Trim();
        value = null;
        if (text.Length == 0)
        {
            return true;
        }
        string number = text.EndsWith('%') ? text[..^1].TrimEnd() : text;
        if (!double.TryParse(number, NumberStyles.Float, CultureInfo.InvariantCulture, out double percent) || !double.IsFinite(percent) || percent < 0)
        {
            return false;
        }
        value = text;
        return true;
    }

    private static void AddIfSet(List<string> args, string option, string? value)
    {
        if (value is not null)
        {
            args.Add(option);
            args.Add(value);
        }
    }
}
