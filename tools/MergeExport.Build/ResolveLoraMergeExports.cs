using System.Security.Cryptography;
using System.Text;
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;
using OnnxLora.MergeExport.Build.Internals;

namespace OnnxLora.MergeExport.Build;

/// <summary>
/// Checks the project's LoraMergeExport items and turns each into a work item with full paths,
/// validated gate settings, a private work folder, a settings stamp file (rewritten only when the
/// settings change) and the list of input files (everything under Model and the adapter folder, the
/// stamp, the tool) that the running target uses as its Inputs.
/// </summary>
public sealed class ResolveLoraMergeExports : Microsoft.Build.Utilities.Task
{
    /// <summary>The LoraMergeExport items (Include = adapter folder).</summary>
    [Required]
    public ITaskItem[] Items { get; set; } = [];

    /// <summary>The folder relative paths are resolved against (the project's folder).</summary>
    [Required]
    public string ProjectDirectory { get; set; } = "";

    /// <summary>The folder under which each item gets its own work folder (tool output, stamp).</summary>
    [Required]
    public string IntermediateDirectory { get; set; } = "";

    /// <summary>The merge-export tool: a path to merge-export.dll or to an executable, or a name on PATH.</summary>
    [Required]
    public string ToolPath { get; set; } = "";

    /// <summary>One work item per valid LoraMergeExport item (Include = the adapter's full path).</summary>
    [Output]
    public ITaskItem[] Exports { get; private set; } = [];

    public override bool Execute()
    {
        string? toolFile = ResolveToolFile();
        var exports = new List<ITaskItem>();
        var outputs = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (ITaskItem item in Items)
        {
            ExportSettings? settings = Read(item);
            if (settings is null)
            {
                continue;
            }
            if (outputs.TryGetValue(settings.OutputPath, out string? other))
            {
                LogError(BuildDiagnostics.OutputInvalid, settings.Adapter, BuildDiagnostics.OutputTwice(settings.Adapter, other, settings.OutputPath));
                continue;
            }
            outputs.Add(settings.OutputPath, settings.Adapter);
            exports.Add(Prepare(settings, toolFile));
        }
        Exports = [.. exports];
        return !Log.HasLoggedErrors;
    }

    private ExportSettings? Read(ITaskItem item)
    {
        string adapter = item.ItemSpec.Trim().TrimEnd('/', '\\');
        if (adapter.Length == 0)
        {
            adapter = item.ItemSpec;
        }
        bool ok = true;
        string adapterPath = FullPath(adapter);
        if (!Directory.Exists(adapterPath))
        {
            ok = LogError(BuildDiagnostics.AdapterMissing, adapter, BuildDiagnostics.AdapterNotFound(adapter, adapterPath));
        }

        string model = item.GetMetadata(ExportSettings.Metadata.Model).Trim();
        string modelPath = "";
        if (model.Length == 0)
        {
            ok = LogError(BuildDiagnostics.ModelMissing, adapter, BuildDiagnostics.ModelNotSet(adapter));
        }
        else
        {
            modelPath = FullPath(model);
            if (!Directory.Exists(modelPath) && !File.Exists(modelPath))
            {
                ok = LogError(BuildDiagnostics.ModelMissing, adapter, BuildDiagnostics.ModelNotFound(adapter, model, modelPath));
            }
        }

        string output = item.GetMetadata(ExportSettings.Metadata.OutputFile).Trim();
        string outputPath = "";
        if (output.Length == 0 || output.EndsWith('/') || output.EndsWith('\\'))
        {
            ok = LogError(BuildDiagnostics.OutputInvalid, adapter, BuildDiagnostics.OutputNotSet(adapter));
        }
        else
        {
            outputPath = FullPath(output);
        }
        string reportDir = item.GetMetadata(ExportSettings.Metadata.ReportDir).Trim();
        string reportPath = reportDir.Length > 0 ? FullPath(reportDir).TrimEnd('/', '\\') : outputPath + ".report";

        string validateText = item.GetMetadata(ExportSettings.Metadata.Validate);
        if (!ExportSettings.TryParseValidate(validateText, out bool validate))
        {
            ok = LogError(BuildDiagnostics.MetadataInvalid, adapter,
                BuildDiagnostics.MetadataNotValid(adapter, ExportSettings.Metadata.Validate, validateText, "true or false"));
        }
        ok &= Gate(item, adapter, ExportSettings.Metadata.Atol, 0, double.MaxValue, false, "a number >= 0 (e.g. 1e-4)", out string? atol);
        ok &= Gate(item, adapter, ExportSettings.Metadata.Rtol, 0, double.MaxValue, false, "a number >= 0 (e.g. 1e-3)", out string? rtol);
        ok &= Gate(item, adapter, ExportSettings.Metadata.MinTop1, 0, 1, false, "a fraction in [0, 1] (e.g. 0.99)", out string? minTop1);
        ok &= Gate(item, adapter, ExportSettings.Metadata.MaxLatencyRatio, 0, double.MaxValue, true, "a number > 0 (e.g. 1.05)", out string? maxLatencyRatio);

        string graphOptimizationText = item.GetMetadata(ExportSettings.Metadata.GraphOptimization);
        if (!ExportSettings.TryParseGraphOptimization(graphOptimizationText, out string? graphOptimization))
        {
            ok = LogError(BuildDiagnostics.MetadataInvalid, adapter, BuildDiagnostics.MetadataNotValid(adapter, ExportSettings.Metadata.GraphOptimization,
                graphOptimizationText, $"one of {string.Join(", ", ExportSettings.GraphOptimizationLevels)} (lowercase, as merge-export --graph-optimization takes it)"));
        }
        string cpuMemArenaText = item.GetMetadata(ExportSettings.Metadata.CpuMemArena);
        if (!ExportSettings.TryParseBoolean(cpuMemArenaText, whenEmpty: true, out bool cpuMemArena))
        {
            ok = LogError(BuildDiagnostics.MetadataInvalid, adapter,
                BuildDiagnostics.MetadataNotValid(adapter, ExportSettings.Metadata.CpuMemArena, cpuMemArenaText, "true or false (false turns ONNX Runtime's CPU memory arena off)"));
        }

        string maxRegressionText = item.GetMetadata(ExportSettings.Metadata.MaxRegression);
        if (!ExportSettings.TryParsePercent(maxRegressionText, out string? maxRegression))
        {
            ok = LogError(BuildDiagnostics.MetadataInvalid, adapter,
                BuildDiagnostics.MetadataNotValid(adapter, ExportSettings.Metadata.MaxRegression, maxRegressionText, "a percentage >= 0 (e.g. 5%)"));
        }
        string allowText = item.GetMetadata(ExportSettings.Metadata.AllowDifferentMachines).Trim();
        bool allowDifferentMachines = false;
        if (allowText.Length > 0 && !bool.TryParse(allowText, out allowDifferentMachines))
        {
            ok = LogError(BuildDiagnostics.MetadataInvalid, adapter,
                BuildDiagnostics.MetadataNotValid(adapter, ExportSettings.Metadata.AllowDifferentMachines, allowText, "true or false"));
        }
        string baseline = item.GetMetadata(ExportSettings.Metadata.BaselineReport).Trim();
        string? baselinePath = null;
        if (baseline.Length == 0)
        {
            if (maxRegression is not null)
            {
                ok = LogError(BuildDiagnostics.MetadataInvalid, adapter, BuildDiagnostics.MaxRegressionWithoutBaseline(adapter));
            }
        }
        else if (File.Exists(FullPath(baseline)))
        {
            baselinePath = FullPath(baseline);
        }
        else
        {
            // The first build of a pipeline has no earlier report: compare from the next one on.
            Log.LogWarning(null, BuildDiagnostics.BaselineMissing, null, adapter, 0, 0, 0, 0,
                BuildDiagnostics.BaselineNotFound(adapter, baseline, FullPath(baseline)));
        }
        string? OptionalPath(string name) => item.GetMetadata(name).Trim() is { Length: > 0 } path ? FullPath(path) : null;
        string? onnxAdapterPath = OptionalPath(ExportSettings.Metadata.OnnxAdapterFile);
        string? adaptersModelPath = OptionalPath(ExportSettings.Metadata.AdaptersModelFile);
        foreach (var (name, path) in new[] { (ExportSettings.Metadata.OnnxAdapterFile, onnxAdapterPath), (ExportSettings.Metadata.AdaptersModelFile, adaptersModelPath) })
        {
            if (path is not null && (path == outputPath || path == onnxAdapterPath && name == ExportSettings.Metadata.AdaptersModelFile))
            {
                ok = LogError(BuildDiagnostics.MetadataInvalid, adapter, BuildDiagnostics.MetadataNotValid(adapter, name, item.GetMetadata(name), "a file of its own (not OutputFile's or the other adapter output's)"));
            }
        }
        return ok
            ? new ExportSettings(adapter, adapterPath, modelPath, outputPath, reportPath, validate, atol, rtol, minTop1, maxLatencyRatio,
                baselinePath, maxRegression, allowDifferentMachines, onnxAdapterPath, adaptersModelPath, graphOptimization, cpuMemArena)
            : null;
    }

    private bool Gate(ITaskItem item, string adapter, string name, double min, double max, bool minExclusive, string expected, out string? value)
    {
        string text = item.GetMetadata(name);
        if (ExportSettings.TryParseGate(text, min, max, minExclusive, out value))
        {
            return true;
        }
        return LogError(BuildDiagnostics.MetadataInvalid, adapter, BuildDiagnostics.MetadataNotValid(adapter, name, text, expected));
    }

    private TaskItem Prepare(ExportSettings settings, string? toolFile)
    {
        string workDir = Path.Combine(Path.GetFullPath(IntermediateDirectory), WorkFolderName(settings.OutputPath));
        Directory.CreateDirectory(workDir);
        string stamp = Path.Combine(workDir, "settings.stamp");
        string stampText = settings.StampText(toolFile ?? ToolPath);
        if (!File.Exists(stamp) || File.ReadAllText(stamp) != stampText)
        {
            File.WriteAllText(stamp, stampText);
        }

        var inputs = new List<string>();
        AddFiles(inputs, settings.ModelPath);
        AddFiles(inputs, settings.AdapterPath);
        inputs.Add(stamp);
        if (settings.BaselineReport is not null)
        {
            // A new baseline can change the verdict: it makes the item out of date.
            inputs.Add(settings.BaselineReport);
        }
        if (toolFile is not null)
        {
            inputs.Add(toolFile);
        }
        LogIfUpToDate(settings, inputs);

        var export = new TaskItem(MSBuildText.Escape(settings.AdapterPath));
        export.SetMetadata("Adapter", MSBuildText.Escape(settings.Adapter));
        export.SetMetadata("ModelPath", MSBuildText.Escape(settings.ModelPath));
        export.SetMetadata("OutputPath", MSBuildText.Escape(settings.OutputPath));
        export.SetMetadata("ReportDirectory", MSBuildText.Escape(settings.ReportDirectory));
        export.SetMetadata("OutputHint", MSBuildText.Escape(Display(settings.OutputPath)));
        export.SetMetadata("ReportDirectoryHint", MSBuildText.Escape(Display(settings.ReportDirectory)));
        export.SetMetadata("Validate", settings.Validate ? "true" : "false");
        export.SetMetadata(ExportSettings.Metadata.Atol, MSBuildText.Escape(settings.Atol ?? ""));
        export.SetMetadata(ExportSettings.Metadata.Rtol, MSBuildText.Escape(settings.Rtol ?? ""));
        export.SetMetadata(ExportSettings.Metadata.MinTop1, MSBuildText.Escape(settings.MinTop1 ?? ""));
        export.SetMetadata(ExportSettings.Metadata.MaxLatencyRatio, MSBuildText.Escape(settings.MaxLatencyRatio ?? ""));
        export.SetMetadata(ExportSettings.Metadata.BaselineReport, MSBuildText.Escape(settings.BaselineReport ?? ""));
        export.SetMetadata(ExportSettings.Metadata.MaxRegression, MSBuildText.Escape(settings.MaxRegression ?? ""));
        export.SetMetadata(ExportSettings.Metadata.AllowDifferentMachines, settings.AllowDifferentMachines ? "true" : "false");
        export.SetMetadata(ExportSettings.Metadata.OnnxAdapterFile, MSBuildText.Escape(settings.OnnxAdapterPath ?? ""));
        export.SetMetadata(ExportSettings.Metadata.AdaptersModelFile, MSBuildText.Escape(settings.AdaptersModelPath ?? ""));
        export.SetMetadata(ExportSettings.Metadata.GraphOptimization, settings.GraphOptimization ?? "");
        export.SetMetadata(ExportSettings.Metadata.CpuMemArena, settings.CpuMemArena ? "true" : "false");
        export.SetMetadata("WorkDirectory", MSBuildText.Escape(workDir));
        export.SetMetadata("StampFile", MSBuildText.Escape(stamp));
        export.SetMetadata("InputFiles", string.Join(";", inputs.Select(MSBuildText.Escape)));
        return export;
    }

    private void LogIfUpToDate(ExportSettings settings, List<string> inputs)
    {
        if (!File.Exists(settings.OutputPath))
        {
            return;
        }
        DateTime output = File.GetLastWriteTimeUtc(settings.OutputPath);
        if (inputs.All(input => File.GetLastWriteTimeUtc(input) <= output))
        {
            Log.LogMessage(MessageImportance.High,
                $"{BuildDiagnostics.Adapter(settings.Adapter)}: {Display(settings.OutputPath)} is up to date with its {inputs.Count} input files and settings; skipping merge-export.");
        }
    }

    private static void AddFiles(List<string> inputs, string path)
    {
        if (File.Exists(path))
        {
            inputs.Add(path);
        }
        else if (Directory.Exists(path))
        {
            var files = Directory.GetFiles(path, "*", SearchOption.AllDirectories);
            Array.Sort(files, StringComparer.Ordinal);
            inputs.AddRange(files);
        }
    }

    /// <summary>The tool's file when it can be found (it is then an input), else null.</summary>
    private string? ResolveToolFile() => ToolLocation.Find(ToolPath, ProjectDirectory);

    private static string WorkFolderName(string outputPath)
    {
        byte[] hash = SHA256.HashData(Encoding.UTF8.GetBytes(outputPath));
        return $"{Path.GetFileNameWithoutExtension(outputPath)}-{Convert.ToHexStringLower(hash)[..10]}";
    }

    private string FullPath(string path) => Path.GetFullPath(Path.Combine(ProjectDirectory, path));

    /// <summary>A path as the user would write it: relative to the project when under it.</summary>
    private string Display(string fullPath)
    {
        string relative = Path.GetRelativePath(ProjectDirectory, fullPath);
        return relative.StartsWith("..", StringComparison.Ordinal) || Path.IsPathRooted(relative) ? fullPath : relative;
    }

    private bool LogError(string code, string adapter, string message)
    {
        Log.LogError(null, code, null, adapter, 0, 0, 0, 0, message);
        return false;
    }
}
