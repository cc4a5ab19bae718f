using System.ComponentModel;
using System.Text;
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;
using OnnxLora.MergeExport.Build.Internals;

namespace OnnxLora.MergeExport.Build;

/// <summary>
/// Runs <c>merge-export run --json</c> for one LoRA adapter (a <see cref="ToolTask"/>: MSBuild starts the
/// process, streams its output to this task's thread, and kills its process tree when the build is
/// cancelled). The tool's stderr lines go to the build log; its stdout is the JSON result, which
/// RunMergeExport.Results.cs turns into the build's outcome: the merged model and the report folder
/// copied into place, one OLMX001 error per failed gate, or OLMX002 for a tool error.
/// </summary>
public sealed partial class RunMergeExport : ToolTask
{
    private readonly StringBuilder _stdout = new();
    private string? _lastStderrLine;
    private string? _stderrErrorMessage;
    private string? _adapterSkipReason;
    private string? _executable;
    private string? _dll;
    private volatile bool _cancelled;

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

    /// <summary>ReportDirectory as shown in messages (relative to the project when under it).</summary>
    public string ReportDirectoryHint { get; set; } = "";

    /// <summary>This item's private folder; the tool writes into its out/ subfolder.</summary>
    [Required]
    public string WorkDirectory { get; set; } = "";

    /// <summary>
    /// merge-export.dll (run with <see cref="DotnetHost"/>), an executable, or a name on PATH. (Not
    /// ToolTask's ToolPath, which is the folder of <see cref="ToolTask.ToolExe"/>.)
    /// </summary>
    [Required]
    public string MergeExportToolPath { get; set; } = "";

    /// <summary>The dotnet host that runs a .dll tool; default "dotnet" (found on PATH).</summary>
    public string DotnetHost { get; set; } = "";

    public bool Validate { get; set; } = true;

    public string Atol { get; set; } = "";

    public string Rtol { get; set; } = "";

    public string MinTop1 { get; set; } = "";

    public string MaxLatencyRatio { get; set; } = "";

    /// <summary>Full path of an existing baseline report, or empty.</summary>
    public string BaselineReport { get; set; } = "";

    public string MaxRegression { get; set; } = "";

    public bool AllowDifferentMachines { get; set; }

    /// <summary>Full path the run's .onnx_adapter is copied to, or empty.</summary>
    public string OnnxAdapterFile { get; set; } = "";

    /// <summary>Full path the run's adapter-ready graph is copied to, or empty.</summary>
    public string AdaptersModelFile { get; set; } = "";

    /// <summary>ONNX Runtime's graph optimisation level of the validation (all, extended, basic, none), or empty: the tool's default.</summary>
    public string GraphOptimization { get; set; } = "";

    /// <summary>False turns ONNX Runtime's CPU memory arena off in the validation (<c>--no-cpu-mem-arena</c>); default true.</summary>
    public bool CpuMemArena { get; set; } = true;

    /// <summary>Importance of the tool's stderr lines in the build log: high, normal (default) or low.</summary>
    public string ToolLogImportance { get; set; } = "normal";

    /// <summary>The files written: the merged model and the report files.</summary>
    [Output]
    public ITaskItem[] WrittenFiles { get; private set; } = [];

    private string OutDirectory => Path.Combine(WorkDirectory, "out");

    protected override string ToolName => _executable is null ? "merge-export" : Path.GetFileName(_executable);

    // The tool writes UTF-8 whatever the console's code page.
    protected override Encoding StandardOutputEncoding => Encoding.UTF8;

    protected override Encoding StandardErrorEncoding => Encoding.UTF8;

    // ToolTask hands both streams' lines to LogEventsFromTextOutput with the stream's importance; these two
    // differ so that it can tell stdout (the JSON result) from stderr (logged with ToolLogImportance).
    protected override MessageImportance StandardOutputLoggingImportance => MessageImportance.Low;

    protected override MessageImportance StandardErrorLoggingImportance => MessageImportance.High;

    public override bool Execute()
    {
        try
        {
            if (Directory.Exists(OutDirectory))
            {
                Directory.Delete(OutDirectory, recursive: true);
            }
            Directory.CreateDirectory(WorkDirectory);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return Error(BuildDiagnostics.CopyFailed, BuildDiagnostics.CopyFailure(Adapter, OutDirectory, e.Message));
        }
        Log.LogMessage(MessageImportance.High, $"{BuildDiagnostics.Adapter(Adapter)}: merge-export run -> {Shown(OutputHint, OutputPath)}");
        return base.Execute();
    }

    /// <summary>Ctrl+C: ToolTask kills the tool's process tree; the outcome is then an OLMX002 "cancelled".</summary>
    public override void Cancel()
    {
        _cancelled = true;
        base.Cancel();
    }

    /// <summary>Finds the tool (and, for a .dll, the dotnet host) before anything runs: OLMX007 when missing.</summary>
    protected override bool ValidateParameters()
    {
        if (!base.ValidateParameters())
        {
            return false;
        }
        if (!string.IsNullOrEmpty(StandardOutputImportance) || !string.IsNullOrEmpty(StandardErrorImportance))
        {
            Log.LogError($"{nameof(RunMergeExport)} does not take StandardOutputImportance or StandardErrorImportance (it tells the tool's JSON result on stdout from its messages on stderr by their importance); set {nameof(ToolLogImportance)} (the LoraMergeExportToolLogImportance property) instead.");
            return false;
        }
        string directory = Directory.GetCurrentDirectory();
        string tool = MergeExportToolPath.Trim();
        if (ToolLocation.IsDll(tool))
        {
            _dll = ToolLocation.Find(tool, directory);
            if (_dll is null)
            {
                return Error(BuildDiagnostics.ToolNotStarted, BuildDiagnostics.ToolNotFound(Adapter, tool, NotFound(tool, directory)));
            }
            string host = string.IsNullOrWhiteSpace(DotnetHost) ? "dotnet" : DotnetHost.Trim();
            _executable = ToolLocation.Find(host, directory);
            if (_executable is null)
            {
                return Error(BuildDiagnostics.ToolNotStarted,
                    BuildDiagnostics.ToolNotFound(Adapter, tool, $"the dotnet host that runs it: {NotFound(host, directory)} (MergeExportDotnetHost)"));
            }
            return true;
        }
        _executable = ToolLocation.Find(tool, directory);
        return _executable is not null
            || Error(BuildDiagnostics.ToolNotStarted, BuildDiagnostics.ToolNotFound(Adapter, tool, NotFound(tool, directory)));
    }

    protected override string GenerateFullPathToTool() => _executable ?? ToolName;

    /// <summary>[merge-export.dll] run --model M --adapter A --out O --json --force [gates] [session options]: every argument quoted as needed.</summary>
    protected override string GenerateCommandLineCommands()
    {
        var line = new ArgumentLine();
        if (_dll is not null)
        {
            line.Add(_dll);
        }
        var settings = new ExportSettings(Adapter, AdapterPath, ModelPath, OutputPath, ReportDirectory, Validate,
            Blank(Atol), Blank(Rtol), Blank(MinTop1), Blank(MaxLatencyRatio), Blank(BaselineReport), Blank(MaxRegression), AllowDifferentMachines,
            Blank(OnnxAdapterFile), Blank(AdaptersModelFile), Blank(GraphOptimization), CpuMemArena);
        foreach (string argument in settings.ToolArguments(OutDirectory))
        {
            line.Add(argument);
        }
        return line.ToString();
    }

    /// <summary>The arguments are exact paths and values: no backslash rewriting on Unix.</summary>
    protected override string AdjustCommandsForOperatingSystem(string input) => input;

    protected override void LogToolCommand(string message) => Log.LogCommandLine(MessageImportance.Low, message);

    protected override void LogEventsFromTextOutput(string singleLine, MessageImportance messageImportance)
    {
        if (messageImportance == StandardOutputImportanceToUse)
        {
            _stdout.Append(singleLine).Append('\n');
            return;
        }
        if (singleLine.Trim().Length > 0)
        {
            _lastStderrLine = singleLine.Trim();
            _stderrErrorMessage = ToolResult.ErrorMessageOf(singleLine) ?? _stderrErrorMessage;
            _adapterSkipReason = ToolResult.AdapterSkipReasonOf(singleLine) ?? _adapterSkipReason;
        }
        Log.LogMessage(Importance(ToolLogImportance), "merge-export: " + singleLine);
    }

    /// <summary>Runs the tool (ToolTask), then turns its exit code and JSON result into the build's outcome.</summary>
    /// <returns>0 when the item succeeded; otherwise the tool's exit code, or -1 (errors have been logged).</returns>
    protected override int ExecuteTool(string pathToTool, string responseFileCommands, string commandLineCommands)
    {
        int exitCode;
        try
        {
            exitCode = base.ExecuteTool(pathToTool, responseFileCommands, commandLineCommands);
        }
        catch (Win32Exception e)
        {
            Error(BuildDiagnostics.ToolNotStarted, BuildDiagnostics.ToolNotFound(Adapter, MergeExportToolPath, e.Message));
            return -1;
        }
        if (Conclude(exitCode))
        {
            return exitCode;
        }
        return exitCode == 0 ? -1 : exitCode;
    }

    private static string NotFound(string tool, string directory) => ToolLocation.IsPath(tool)
        ? $"{Path.GetFullPath(Path.Combine(directory, tool))} does not exist"
        : "not found on PATH";

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

    /// <summary>A command line of literal arguments, each quoted (and its quotes escaped) by CommandLineBuilder's rules.</summary>
    private sealed class ArgumentLine : CommandLineBuilder
    {
        public void Add(string argument)
        {
            AppendSpaceIfNotEmpty();
            AppendTextWithQuoting(argument);
        }
    }
}
