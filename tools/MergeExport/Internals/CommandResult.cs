using System.Text.Json;
using System.Text.Json.Serialization;
using OnnxLora.Core;
using OnnxLora.Validate;

namespace OnnxLora.MergeExport.Internals;

/// <summary>
/// The machine-readable result printed with --json, exactly one object per run: {"command", "status": "passed" |
/// "gate-failed" | "error", "exitCode", "outputs": {name: path}, "failedGates": [...], "error", "errorKind":
/// "bad-input" | "internal" | "cancelled" (null unless status is "error"), plus command-specific "details"}.
/// </summary>
internal sealed record CommandResult(string Command, string Status)
{
    private static readonly JsonSerializerOptions Options = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
    };

    /// <summary>The process exit code that goes with this result (0 passed, 1 gate-failed unless set).</summary>
    public int ExitCode { get; init; } = Status == "gate-failed" ? Cli.GateFailed : Cli.Success;

    public Dictionary<string, string> Outputs { get; init; } = [];

    public IReadOnlyList<FailedGate> FailedGates { get; init; } = [];

    public string? Error { get; init; }

    [JsonPropertyName("errorKind")]
    public string? Kind { get; init; }

    public Dictionary<string, object?> Details { get; init; } = [];

    public string ToJson() => JsonSerializer.Serialize(this, Options);

    /// <summary>The result of a run that failed: <paramref name="message"/> is the one line also written to stderr.</summary>
    public static CommandResult Failure(string command, ErrorKind kind, string message) => new(command, "error")
    {
        ExitCode = Cli.ExitCodeOf(kind),
        Error = message,
        Kind = kind switch
        {
            ErrorKind.BadInput => "bad-input",
            ErrorKind.Cancelled => "cancelled",
            _ => "internal",
        },
    };

    public static IReadOnlyList<FailedGate> From(ValidationReport report) =>
        report.Failures.Select(f => new FailedGate(f.Gate, f.Output, f.Value, f.Limit, f.Message)).ToList();
}

internal sealed record FailedGate(string Gate, string? Output, double? Value, double? Limit, string Message);
