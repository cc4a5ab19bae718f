using System.Diagnostics;
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;
using OnnxLora.MergeExport.Build.Internals;

namespace OnnxLora.MergeExport.Build;

/// <summary>
/// Runs <c>merge-export run --json</c> for one LoRA adapter, streams the tool's stderr to the build
/// log, reads its JSON result and, when every gate passed, copies the merged model to Output and the
/// report folder to ReportDirectory (both atomically). A failed gate is one OLMX001 error per gate;
/// a tool error is OLMX002.
/// </summary>
public sealed class RunMergeExport : Microsoft.Build.Utilities.Task, ICancelableTask
{
    private readonly CancellationTokenSource _cancel = new();

    /// <summary>The adapter as written in the project (used in messages and as the errors' file).</summary>
    [Required]
    public string Adapter { get; set; } = "";

    [Required]
    public string AdapterPath { get; set; } = "";

    [Required]
    public string ModelPath { get; set; } = "";

    [Required]
    public string OutputPath { get; set; } = "";

    [Required]
    public string ReportDirectory { get; set; } = "";

    /// <summary>OutputPath as shown in messages (relative to the project when under it).</summary>
    public string OutputHint { get; set; } = "";

    /// <summary>Where the report is, as shown in gate errors (relative to the project when under it).</summary>
    public string ReportHint { get; set; } = "";

    /// <summary>This item's private folder; the tool writes into its out/ subfolder.</summary>
    [Required]
    public string WorkDirectory { get; set; } = "";

    /// <summary>merge-export.dll (run with <see cref="DotnetHost"/>), an executable, or a name on PATH.</summary>
    [Required]
    public string ToolPath { get; set; } = "";

    /// <summary>The dotnet host that runs a .dll tool; default "dotnet".</summary>
    public string DotnetHost { get; set; } = "";

    public bool Validate { get; set; } = true;

    public string Atol { get; set; } = "";

    public string Rtol { get; set; } = "";

    public string MinTop1 { get; set; } = "";

    public string MaxLatencyRatio { get; set; } = "";

    /// <summary>Importance of the tool's stderr lines in the build log: high, normal (default) or low.</summary>
    public string ToolLogImportance { get; set; } = "normal";

    /// <summary>The files written: the merged model and the report files.</summary>
    [Output]
    public ITaskItem[] WrittenFiles { get; private set; } = [];

    public void Cancel() => _cancel.Cancel();

    public override bool Execute()
    {
        var settings = new ExportSettings(Adapter, AdapterPath, ModelPath, OutputPath, ReportDirectory, Validate,
            Blank(Atol), Blank(Rtol), Blank(MinTop1), Blank(MaxLatencyRatio));
        string outDir = Path.Combine(WorkDirectory, "out");
        try
        {
            if (Directory.Exists(outDir))
            {
                Directory.Delete(outDir, recursive: true);
            }
            Directory.CreateDirectory(WorkDirectory);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return Error(BuildDiagnostics.CopyFailed, BuildDiagnostics.CopyFailure(Adapter, outDir, e.Message));
        }

        IReadOnlyList<string> arguments = settings.ToolArguments(outDir);
        ProcessStartInfo info = ToolProcess.StartInfo(ToolPath, DotnetHost, arguments, Directory.GetCurrentDirectory());
        Log.LogMessage(MessageImportance.High, $"{BuildDiagnostics.Adapter(Adapter)}: merge-export run -> {Shown(OutputHint, OutputPath)}");
        Log.LogCommandLine(MessageImportance.Low, CommandLine(info));

        MessageImportance importance = Importance(ToolLogImportance);
        ToolRun run = ToolProcess.Run(info, line => Log.LogMessage(importance, "merge-export: " + line), _cancel.Token);
        if (!run.Started)
        {
            return Error(BuildDiagnostics.ToolNotStarted, BuildDiagnostics.ToolNotFound(Adapter, ToolPath, run.StartError ?? "unknown reason"));
        }
        if (_cancel.IsCancellationRequested)
        {
            return Error(BuildDiagnostics.ToolError, BuildDiagnostics.ToolCancelled(Adapter));
        }

        ToolResult? result = ToolResult.TryParse(run.Stdout);
        if (result is null)
        {
            return Error(BuildDiagnostics.ToolError, run.ExitCode == 130
                ? BuildDiagnostics.ToolCancelled(Adapter)
                : BuildDiagnostics.NoJsonResult(Adapter, run.ExitCode, run.Stdout, run.LastStderrLine));
        }
        return result.Status switch
        {
            ToolResult.Passed when run.ExitCode == 0 => CopyResults(result, outDir),
            ToolResult.GateFailedStatus => GateErrors(result, outDir),
            ToolResult.ErrorStatus => Error(BuildDiagnostics.ToolError,
                BuildDiagnostics.ToolReportedError(Adapter, result.Error ?? $"no message (exit code {run.ExitCode})")),
            _ => Error(BuildDiagnostics.ToolError, BuildDiagnostics.InconsistentResult(Adapter, run.ExitCode, result.Status)),
        };
    }

    private bool CopyResults(ToolResult result, string outDir)
    {
        string merged = result.Merged ?? Path.Combine(outDir, "merged.onnx");
        if (!File.Exists(merged))
        {
            return Error(BuildDiagnostics.ToolError, BuildDiagnostics.MergedModelMissing(Adapter, merged));
        }
        var written = new List<ITaskItem>();
        try
        {
            // Reports first: the model is the target's Output, so it is written last and a failure
            // before it leaves the item out of date.
            written.AddRange(CopyReports(result, outDir).Select(f => new TaskItem(MSBuildText.Escape(f))));
            OutputCopy.File(merged, OutputPath);
            written.Add(new TaskItem(MSBuildText.Escape(OutputPath)));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return Error(BuildDiagnostics.CopyFailed, BuildDiagnostics.CopyFailure(Adapter, OutputPath, e.Message));
        }
        WrittenFiles = [.. written];
        Log.LogMessage(MessageImportance.High, $"{BuildDiagnostics.Adapter(Adapter)}: merged model written to {Shown(OutputHint, OutputPath)}"
            + (Directory.Exists(ReportDirectory) ? $", reports in {Shown(Path.GetDirectoryName(ReportHint) ?? "", ReportDirectory)}" : ""));
        return true;
    }

    private bool GateErrors(ToolResult result, string outDir)
    {
        string? hint = null;
        try
        {
            if (CopyReports(result, outDir).Count > 0)
            {
                hint = string.IsNullOrEmpty(ReportHint) ? Path.Combine(ReportDirectory, "report.md") : ReportHint;
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Log.LogWarning(null, BuildDiagnostics.CopyFailed, null, Adapter, 0, 0, 0, 0,
                BuildDiagnostics.CopyFailure(Adapter, ReportDirectory, e.Message));
        }
        if (result.FailedGates.Count == 0)
        {
            return Error(BuildDiagnostics.GateFailed, BuildDiagnostics.GateFailedWithoutDetails(Adapter, hint));
        }
        foreach (GateFailure gate in result.FailedGates)
        {
            Error(BuildDiagnostics.GateFailed, BuildDiagnostics.GateFailure(Adapter, gate, hint));
        }
        return false;
    }

    /// <summary>Replaces ReportDirectory with the tool's report folder; removes a stale one when the tool wrote none.</summary>
    private IReadOnlyList<string> CopyReports(ToolResult result, string outDir)
    {
        string source = result.ReportMarkdown is { } markdown
            ? Path.GetDirectoryName(Path.GetFullPath(markdown))!
            : Path.Combine(outDir, "report");
        if (Directory.Exists(source))
        {
            return OutputCopy.Folder(source, ReportDirectory);
        }
        if (Directory.Exists(ReportDirectory))
        {
            Log.LogMessage(MessageImportance.Normal, $"{BuildDiagnostics.Adapter(Adapter)}: merge-export wrote no report; removing the old {ReportDirectory}.");
            Directory.Delete(ReportDirectory, recursive: true);
        }
        return [];
    }

    private bool Error(string code, string message)
    {
        Log.LogError(null, code, null, Adapter, 0, 0, 0, 0, message);
        return false;
    }

    private static string Shown(string hint, string fullPath) => string.IsNullOrEmpty(hint) ? fullPath : hint;

    private static string? Blank(string value) => string.IsNullOrWhiteSpace(value) ? null : value.Trim();

    private static MessageImportance Importance(string text) => text.Trim().ToLowerInvariant() switch
    {
        "high" => MessageImportance.High,
        "low" => MessageImportance.Low,
        _ => MessageImportance.Normal,
    };

    private static string CommandLine(ProcessStartInfo info) =>
        string.Join(" ", new[] { info.FileName }.Concat(info.ArgumentList).Select(a => a.Contains(' ') ? $"\"{a}\"" : a));
}
