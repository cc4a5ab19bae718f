using System.Globalization;

namespace OnnxLora.MergeExport.Build.Internals;

/// <summary>
/// The one place the MSBuild integration's error codes and messages are made. Every message names the
/// LoRA adapter (as written in the LoraMergeExport item) and what was found and expected.
/// </summary>
internal static class BuildDiagnostics
{
    /// <summary>A validation gate failed (one error per failed gate).</summary>
    public const string GateFailed = "OLMX001";

    /// <summary>merge-export reported an error (bad input or an internal error), crashed, was cancelled, or printed no JSON result.</summary>
    public const string ToolError = "OLMX002";

    /// <summary>The item's Model does not exist.</summary>
    public const string ModelMissing = "OLMX003";

    /// <summary>The adapter folder (the item's Include) does not exist.</summary>
    public const string AdapterMissing = "OLMX004";

    /// <summary>The item's OutputFile is missing, or two items write the same OutputFile.</summary>
    public const string OutputInvalid = "OLMX005";

    /// <summary>A metadata value (Validate, Atol, Rtol, MinTop1, MaxLatencyRatio, MaxRegression, AllowDifferentMachines) is not valid, or MaxRegression lacks a BaselineReport.</summary>
    public const string MetadataInvalid = "OLMX006";

    /// <summary>The merge-export tool could not be started.</summary>
    public const string ToolNotStarted = "OLMX007";

    /// <summary>Copying the merged model or the reports to their destination failed.</summary>
    public const string CopyFailed = "OLMX008";

    /// <summary>Warning: the item's BaselineReport does not exist (yet); the regression gate is skipped for this build.</summary>
    public const string BaselineMissing = "OLMX009";

    /// <summary>OnnxAdapterFile or AdaptersModelFile is set but the tool wrote no ONNX Runtime adapter (the adapter cannot be one).</summary>
    public const string OnnxAdapterMissing = "OLMX010";

    public static string Adapter(string adapter) => $"LoRA adapter '{adapter}'";

    public static string GateFailure(string adapter, GateFailure gate, string? reportHint)
    {
        string on = gate.Output is null ? "" : $" on output '{gate.Output}'";
        string comparison = gate.Value is not null && gate.Limit is not null
            ? $": {gate.Value} {(gate.IsLowerBound ? "<" : ">")} {gate.Limit}"
            : "";
        string detail = string.IsNullOrWhiteSpace(gate.Message) ? "" : $" ({gate.Message.Trim()})";
        string see = reportHint is null ? "" : $" (see {reportHint})";
        return $"{Adapter(adapter)}: validation gate {gate.Gate}{on} failed{comparison}{detail}{see}";
    }

    public static string GateFailedWithoutDetails(string adapter, string? reportHint) =>
        $"{Adapter(adapter)}: merge-export reported a failed validation gate but named none"
        + (reportHint is null ? "." : $" (see {reportHint}).");

    public static string ToolReportedError(string adapter, string message) =>
        $"{Adapter(adapter)}: merge-export failed: {message}";

    public static string ToolInternalError(string adapter, int exitCode, string message) =>
        $"{Adapter(adapter)}: merge-export stopped on an internal error (exit code {exitCode.ToString(CultureInfo.InvariantCulture)}); this is a bug in the tool, not a problem with this item: {message}";

    public static string ToolCancelled(string adapter, int? exitCode) =>
        $"{Adapter(adapter)}: merge-export was cancelled"
        + (exitCode is { } code ? $" (exit code {code.ToString(CultureInfo.InvariantCulture)})." : ".");

    public static string NoJsonResult(string adapter, int exitCode, string stdout, string? lastStderrLine)
    {
        string found = stdout.Length == 0
            ? "nothing on stdout"
            : $"'{Shorten(stdout)}' on stdout";
        string last = lastStderrLine is null ? "" : $" Last message: {lastStderrLine.Trim()}";
        return $"{Adapter(adapter)}: merge-export exited with code {exitCode.ToString(CultureInfo.InvariantCulture)}: found {found}, expected one JSON result object (merge-export run --json).{last}";
    }

    public static string InconsistentResult(string adapter, int exitCode, string status) =>
        $"{Adapter(adapter)}: merge-export exited with code {exitCode.ToString(CultureInfo.InvariantCulture)} but its JSON status is '{status}'; expected 0 with 'passed', 1 with 'gate-failed', 2, 70 or 130 with 'error'.";

    public static string ToolNotFound(string adapter, string tool, string reason) =>
        $"{Adapter(adapter)}: could not start the merge-export tool '{tool}': {reason}. Install it (dotnet tool install -g OnnxLora.MergeExport) or set the MergeExportToolPath property to merge-export.dll or to an executable.";

    public static string ModelNotFound(string adapter, string model, string fullPath) =>
        $"{Adapter(adapter)}: Model '{model}' not found (looked for the folder or file {fullPath}).";

    public static string ModelNotSet(string adapter) =>
        $"{Adapter(adapter)}: the Model metadata is not set; expected the base checkpoint folder, e.g. Model=\"base/\".";

    public static string AdapterNotFound(string adapter, string fullPath) =>
        $"{Adapter(adapter)}: adapter folder not found (looked for {fullPath}).";

    public static string OutputNotSet(string adapter) =>
        $"{Adapter(adapter)}: the OutputFile metadata is not set; expected the path of the merged .onnx file, e.g. OutputFile=\"out/x.onnx\".";

    public static string OutputTwice(string adapter, string other, string output) =>
        $"{Adapter(adapter)}: OutputFile {output} is also the OutputFile of LoRA adapter '{other}'; each item needs its own OutputFile.";

    public static string MetadataNotValid(string adapter, string name, string found, string expected) =>
        $"{Adapter(adapter)}: metadata {name}: found '{found}', expected {expected}.";

    public static string MaxRegressionWithoutBaseline(string adapter) =>
        $"{Adapter(adapter)}: metadata MaxRegression is set but BaselineReport is not; expected the validation.json of an earlier run to compare with, e.g. BaselineReport=\"baselines/x.validation.json\".";

    public static string BaselineNotFound(string adapter, string baseline, string fullPath) =>
        $"{Adapter(adapter)}: BaselineReport '{baseline}' not found (looked for {fullPath}); latency is not compared with a baseline and the max-regression gate is skipped in this build.";

    public static string MergedModelMissing(string adapter, string path) =>
        $"{Adapter(adapter)}: merge-export reported success but the merged model {path} does not exist.";

    public static string OnnxAdapterNotWritten(string adapter, string? reason) =>
        $"{Adapter(adapter)}: OnnxAdapterFile/AdaptersModelFile is set but merge-export wrote no ONNX Runtime adapter: "
        + (reason ?? "the tool gave no reason") + " (remove the metadata to ship only the merged model).";

    public static string CopyFailure(string adapter, string destination, string reason) =>
        $"{Adapter(adapter)}: could not write {destination}: {reason}";

    private static string Shorten(string text)
    {
        string oneLine = text.Trim().ReplaceLineEndings(" ");
        return oneLine.Length <= 200 ? oneLine : oneLine[..200] + "...";
    }
}
