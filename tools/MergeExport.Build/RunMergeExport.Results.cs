using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;
using OnnxLora.MergeExport.Build.Internals;

namespace OnnxLora.MergeExport.Build;

/// <summary>What the tool's exit code and JSON result mean for the build.</summary>
public sealed partial class RunMergeExport
{
    /// <summary>
    /// Maps the tool's error contract to the build: passed (0) copies the results; gate-failed (1) is one
    /// OLMX001 per gate, pointing at the copied report; error is OLMX002 with the tool's one-line message
    /// (2) or as a tool bug (70); 130 is cancelled. A tool that prints no JSON on failure (an older one) is
    /// read from its exit code and its stderr one-liner (<c>merge-export &lt;verb&gt;: error: &lt;message&gt;</c>).
    /// </summary>
    /// <returns>True when the item succeeded.</returns>
    private bool Conclude(int exitCode)
    {
        if (_cancelled)
        {
            return Error(BuildDiagnostics.ToolError, BuildDiagnostics.ToolCancelled(Adapter, null));
        }
        string stdout = _stdout.ToString();
        ToolResult? result = ToolResult.TryParse(stdout);
        if (result is null)
        {
            return Error(BuildDiagnostics.ToolError, exitCode switch
            {
                ToolExitCode.BadInput => BuildDiagnostics.ToolReportedError(Adapter, StderrMessage(exitCode)),
                ToolExitCode.InternalError => BuildDiagnostics.ToolInternalError(Adapter, exitCode, StderrMessage(exitCode)),
                ToolExitCode.Cancelled => BuildDiagnostics.ToolCancelled(Adapter, exitCode),
                _ => BuildDiagnostics.NoJsonResult(Adapter, exitCode, stdout, _lastStderrLine),
            });
        }
        return result.Status switch
        {
            ToolResult.Passed when exitCode == ToolExitCode.Success => CopyResults(result),
            ToolResult.GateFailedStatus => GateErrors(result),
            ToolResult.ErrorStatus => Error(BuildDiagnostics.ToolError, exitCode switch
            {
                ToolExitCode.InternalError => BuildDiagnostics.ToolInternalError(Adapter, exitCode, result.Error ?? StderrMessage(exitCode)),
                ToolExitCode.Cancelled => BuildDiagnostics.ToolCancelled(Adapter, exitCode),
                _ => BuildDiagnostics.ToolReportedError(Adapter, result.Error ?? StderrMessage(exitCode)),
            }),
            _ => Error(BuildDiagnostics.ToolError, BuildDiagnostics.InconsistentResult(Adapter, exitCode, result.Status)),
        };
    }

    /// <summary>The tool's one-line error message from stderr, else its last stderr line.</summary>
    private string StderrMessage(int exitCode) =>
        _stderrErrorMessage ?? _lastStderrLine ?? $"no message (exit code {exitCode.ToString(System.Globalization.CultureInfo.InvariantCulture)})";

    private bool CopyResults(ToolResult result)
    {
        string merged = result.Merged ?? Path.Combine(OutDirectory, "merged.onnx");
        if (!File.Exists(merged))
        {
            return Error(BuildDiagnostics.ToolError, BuildDiagnostics.MergedModelMissing(Adapter, merged));
        }
        var adapterCopies = new List<(string Source, string Destination)>();
        foreach (var (source, destination) in new[] { (result.OnnxAdapter, Blank(OnnxAdapterFile)), (result.AdaptersModel, Blank(AdaptersModelFile)) })
        {
            if (destination is null)
            {
                continue;
            }
            if (source is null || !File.Exists(source))
            {
                return Error(BuildDiagnostics.OnnxAdapterMissing, BuildDiagnostics.OnnxAdapterNotWritten(Adapter, _adapterSkipReason));
            }
            adapterCopies.Add((source, destination));
        }
        var written = new List<ITaskItem>();
        try
        {
            // Reports and adapter files first: the model is the target's Output, so it is written last and a failure
            // before it leaves the item out of date.
            written.AddRange(CopyReports(result).Select(f => new TaskItem(MSBuildText.Escape(f))));
            foreach (var (source, destination) in adapterCopies)
            {
                OutputCopy.File(source, destination);
                written.Add(new TaskItem(MSBuildText.Escape(destination)));
            }
            OutputCopy.File(merged, OutputPath);
            written.Add(new TaskItem(MSBuildText.Escape(OutputPath)));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return Error(BuildDiagnostics.CopyFailed, BuildDiagnostics.CopyFailure(Adapter, OutputPath, e.Message));
        }
        WrittenFiles = [.. written];
        Log.LogMessage(MessageImportance.High, $"{BuildDiagnostics.Adapter(Adapter)}: merged model written to {Shown(OutputHint, OutputPath)}"
            + (Directory.Exists(ReportDirectory) ? $", reports in {Shown(ReportDirectoryHint, ReportDirectory)}" : "")
            + string.Concat(adapterCopies.Select(c => $", {Path.GetFileName(c.Destination)}")));
        return true;
    }

    private bool GateErrors(ToolResult result)
    {
        string? hint = null;
        try
        {
            if (CopyReports(result).Count > 0)
            {
                hint = ReportHint(result);
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

    /// <summary>
    /// What a gate error points at: the copy of the Markdown report the tool named (outputs.reportMarkdown),
    /// else of its HTML report, else the report folder.
    /// </summary>
    private string ReportHint(ToolResult result)
    {
        string folder = Shown(ReportDirectoryHint, ReportDirectory);
        foreach (string? report in new[] { result.ReportMarkdown, result.ReportHtml })
        {
            if (report is not null && File.Exists(Path.Combine(ReportDirectory, Path.GetFileName(report))))
            {
                return Path.Combine(folder, Path.GetFileName(report));
            }
        }
        return folder;
    }

    /// <summary>Replaces ReportDirectory with the tool's report folder; removes a stale one when the tool wrote none.</summary>
    private IReadOnlyList<string> CopyReports(ToolResult result)
    {
        string? named = result.ReportMarkdown ?? result.ReportHtml;
        string source = named is not null
            ? Path.GetDirectoryName(Path.GetFullPath(named))!
            : Path.Combine(OutDirectory, "report");
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
}
