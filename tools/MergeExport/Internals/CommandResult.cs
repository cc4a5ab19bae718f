using System.Text.Json;
using System.Text.Json.Serialization;
using OnnxLora.Validate;

namespace OnnxLora.MergeExport.Internals;

/// <summary>
/// The machine-readable result printed with --json: {"command", "status": "passed" | "gate-failed" |
/// "error", "outputs": {name: path}, "failedGates": [...], "error", plus command-specific details}.
/// </summary>
internal sealed record CommandResult(string Command, string Status)
{
    private static readonly JsonSerializerOptions Options = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
    };

    public Dictionary<string, string> Outputs { get; init; } = [];

    public IReadOnlyList<FailedGate> FailedGates { get; init; } = [];

    public string? Error { get; init; }

    public Dictionary<string, object?> Details { get; init; } = [];

    public string ToJson() => JsonSerializer.Serialize(this, Options);

    public static IReadOnlyList<FailedGate> From(ValidationReport report) =>
        report.Failures.Select(f => new FailedGate(f.Gate, f.Output, f.Value, f.Limit, f.Message)).ToList();
}

internal sealed record FailedGate(string Gate, string? Output, double? Value, double? Limit, string Message);
