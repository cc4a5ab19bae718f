using System.Text.Json;
using System.Text.RegularExpressions;

namespace OnnxLora.MergeExport.Build.Internals;

/// <summary>merge-export's exit codes (its error contract).</summary>
internal static class ToolExitCode
{
    public const int Success = 0;
    public const int GateFailed = 1;
    public const int BadInput = 2;
    public const int InternalError = 70;
    public const int Cancelled = 130;
}

/// <summary>One failed validation gate as merge-export reports it.</summary>
/// <param name="Gate">atol, rtol, min-top1 or max-latency-ratio.</param>
/// <param name="Output">The model output the gate was measured on, or null for whole-model gates.</param>
/// <param name="Value">The measured value, as the tool wrote it (JSON number text), or null.</param>
/// <param name="Limit">The limit, as the tool wrote it, or null.</param>
/// <param name="Message">The tool's own explanation, or null.</param>
internal sealed record GateFailure(string Gate, string? Output, string? Value, string? Limit, string? Message)
{
    /// <summary>True for gates whose limit is a minimum (min-top1): they fail when the value is below it.</summary>
    public bool IsLowerBound => Gate.StartsWith("min-", StringComparison.Ordinal);
}

/// <summary>
/// The JSON object that <c>merge-export run --json</c> prints on stdout (on failure too), and the one-line
/// error message it writes on stderr (<c>merge-export &lt;verb&gt;: error: &lt;message&gt;</c>).
/// </summary>
internal sealed partial record ToolResult(
    string Status,
    string? Merged,
    string? ReportMarkdown,
    string? ReportHtml,
    IReadOnlyList<GateFailure> FailedGates,
    string? Error)
{
    /// <summary>outputs.onnxAdapter: the adapter's .onnx_adapter file, when the tool wrote one.</summary>
    public string? OnnxAdapter { get; init; }

    /// <summary>outputs.adapters: the adapter-ready graph the .onnx_adapter fits, when the tool wrote one.</summary>
    public string? AdaptersModel { get; init; }

    public const string Passed = "passed";
    public const string GateFailedStatus = "gate-failed";
    public const string ErrorStatus = "error";

    /// <summary>
    /// Reads the tool's stdout; null when it is not one JSON object with a string "status" (the caller
    /// reports that with the exit code and the last stderr line).
    /// </summary>
    public static ToolResult? TryParse(string stdout)
    {
        string text = stdout.Trim();
        if (text.Length == 0 || text[0] != '{')
        {
            return null;
        }
        try
        {
            using var document = JsonDocument.Parse(text);
            JsonElement root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("status", out JsonElement status) || status.ValueKind != JsonValueKind.String)
            {
                return null;
            }
            string? merged = null;
            string? reportMarkdown = null;
            string? reportHtml = null;
            string? onnxAdapter = null;
            string? adaptersModel = null;
            if (root.TryGetProperty("outputs", out JsonElement outputs) && outputs.ValueKind == JsonValueKind.Object)
            {
                onnxAdapter = StringOrNull(outputs, "onnxAdapter");
                adaptersModel = StringOrNull(outputs, "adapters");
                merged = StringOrNull(outputs, "merged");
                reportMarkdown = StringOrNull(outputs, "reportMarkdown");
                reportHtml = StringOrNull(outputs, "reportHtml");
            }
            var gates = new List<GateFailure>();
            if (root.TryGetProperty("failedGates", out JsonElement failed) && failed.ValueKind == JsonValueKind.Array)
            {
                foreach (JsonElement gate in failed.EnumerateArray())
                {
                    if (gate.ValueKind != JsonValueKind.Object)
                    {
                        continue;
                    }
                    gates.Add(new GateFailure(
                        StringOrNull(gate, "gate") ?? "(unnamed)",
                        StringOrNull(gate, "output"),
                        NumberText(gate, "value"),
                        NumberText(gate, "limit"),
                        StringOrNull(gate, "message")));
                }
            }
            return new ToolResult(status.GetString()!, merged, reportMarkdown, reportHtml, gates, StringOrNull(root, "error"))
            {
                OnnxAdapter = onnxAdapter,
                AdaptersModel = adaptersModel,
            };
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>
    /// The message of a stderr line in the tool's error format <c>merge-export &lt;verb&gt;: error: &lt;message&gt;</c>,
    /// or null for any other line.
    /// </summary>
    public static string? ErrorMessageOf(string stderrLine)
    {
        Match match = ErrorLine().Match(stderrLine.Trim());
        return match.Success ? match.Groups["message"].Value.Trim() : null;
    }

    /// <summary>
    /// The reason in <c>run</c>'s stderr warning <c>warning: skipping the ONNX Runtime adapters graph: &lt;reason&gt;</c> (an
    /// adapter that cannot be an .onnx_adapter, e.g. with modules_to_save), or null for any other line.
    /// </summary>
    public static string? AdapterSkipReasonOf(string stderrLine)
    {
        const string Prefix = "warning: skipping the ONNX Runtime adapters graph: ";
        string line = stderrLine.Trim();
        return line.StartsWith(Prefix, StringComparison.Ordinal) ? line[Prefix.Length..] : null;
    }

    [GeneratedRegex(@"^merge-export(?: [a-z][a-z0-9-]*)*: error: (?<message>.+)$", RegexOptions.CultureInvariant)]
    private static partial Regex ErrorLine();

    private static string? StringOrNull(JsonElement obj, string name) =>
        obj.TryGetProperty(name, out JsonElement value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;

    private static string? NumberText(JsonElement obj, string name)
    {
        if (!obj.TryGetProperty(name, out JsonElement value))
        {
            return null;
        }
        return value.ValueKind switch
        {
            JsonValueKind.Number => value.GetRawText(),
            JsonValueKind.String => value.GetString(),
            _ => null,
        };
    }
}
