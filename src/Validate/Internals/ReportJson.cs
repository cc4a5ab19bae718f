using System.Globalization;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization;
using OnnxLora.Core;

namespace OnnxLora.Validate.Internals;

/// <summary>
/// The shape of <c>validation.json</c> (schema <see cref="ValidationReport.SchemaId"/>, docs/report-schema.md) where
/// it differs from <see cref="ValidationReport"/>: the schema field, sorted <c>dims</c> pairs, seconds for time
/// spans, computed <c>totalBytes</c> and comparison names, flat latency statistics. Records whose shape already is
/// the JSON's (<see cref="ProviderReport"/>, <see cref="InputsReport"/>, <see cref="TensorSignature"/>,
/// <see cref="OutputComparison"/>, <see cref="LatencyRatio"/>, <see cref="GateReport"/>, <see cref="GateFailure"/>)
/// are written as they are. Property order is field order.
/// </summary>
internal sealed record ReportJson(
    string Schema,
    ValidationStatus Status,
    string CreatedUtc,
    string ToolVersion,
    string OnnxRuntimeVersion,
    OptionsJson Options,
    ProviderReport Provider,
    InputsReport Inputs,
    IReadOnlyList<ModelJson> Models,
    IReadOnlyList<ComparisonJson> Comparisons,
    LatencyJson? Latency,
    long? PeakMemoryBytes,
    IReadOnlyList<GateReport> Gates,
    IReadOnlyList<GateFailure> Failures,
    IReadOnlyList<string> Warnings)
{
    /// <summary>
    /// The generated options plus what the attribute cannot say: text is not escaped beyond what JSON requires
    /// (the report is a file, not HTML), so "·", "≤" and "+" stay readable.
    /// </summary>
    private static readonly ReportJsonContext Context = new(new JsonSerializerOptions(ReportJsonContext.Default.Options)
    {
        TypeInfoResolver = null,
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    });

    /// <summary>The indented JSON text, without a final newline.</summary>
    public string Serialize() => JsonSerializer.Serialize(this, Context.ReportJson);

    public static ReportJson From(ValidationReport r) => new(
        ValidationReport.SchemaId,
        r.Status,
        r.CreatedUtc.UtcDateTime.ToString("O", CultureInfo.InvariantCulture),
        r.ToolVersion,
        r.OnnxRuntimeVersion,
        OptionsJson.From(r.Options),
        r.Provider,
        r.Inputs,
        [.. r.Models.Select(m => new ModelJson(m.Role, m.Path, m.FileBytes, m.ExternalDataBytes, m.TotalBytes, m.ExternalDataFiles,
            m.SessionCreateMs, m.RssDeltaBytes, m.Inputs, m.Outputs))],
        [.. r.Comparisons.Select(c => new ComparisonJson(c.Name, c.Actual, c.Reference, c.Gated, c.Outputs))],
        r.Latency is { } l ? LatencyJson.From(l) : null,
        r.PeakMemoryBytes,
        r.Gates,
        r.Failures,
        r.Warnings);
}

/// <summary><c>options</c>: <see cref="ValidationOptions"/> with dims as sorted name/value pairs and the duration in seconds.</summary>
internal sealed record OptionsJson(
    ExecutionDevice Device,
    int DeviceId,
    bool AllowCpuFallback,
    int Batch,
    int Sequence,
    IReadOnlyList<DimJson> Dims,
    PaddingSide Padding,
    long PadTokenId,
    int Seed,
    long? VocabSize,
    IReadOnlyList<string> InputFiles,
    int Warmup,
    int Runs,
    double? DurationSeconds,
    double Atol,
    double Rtol,
    double MinTop1,
    double? MaxLatencyRatio,
    int IntraOpThreads,
    int InterOpThreads,
    GraphOptimization GraphOptimization,
    string LogitsOutput)
{
    public static OptionsJson From(ValidationOptions o) => new(
        o.Device, o.DeviceId, o.AllowCpuFallback, o.Batch, o.Sequence,
        [.. o.Dims.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => new DimJson(kv.Key, kv.Value))],
        o.Padding, o.PadTokenId, o.Seed, o.VocabSize, o.InputFiles, o.Warmup, o.Runs, o.Duration?.TotalSeconds,
        o.Atol, o.Rtol, o.MinTop1, o.MaxLatencyRatio, o.IntraOpThreads, o.InterOpThreads, o.GraphOptimization, o.LogitsOutput);
}

/// <summary><c>options.dims[]</c>.</summary>
internal sealed record DimJson(string Name, long Value);

/// <summary><c>models[]</c>: <see cref="ModelReport"/> with <c>totalBytes</c> after the sizes it sums.</summary>
internal sealed record ModelJson(
    ModelRole Role,
    string Path,
    long FileBytes,
    long ExternalDataBytes,
    long TotalBytes,
    IReadOnlyList<string> ExternalDataFiles,
    double SessionCreateMs,
    long? RssDeltaBytes,
    IReadOnlyList<TensorSignature> Inputs,
    IReadOnlyList<TensorSignature> Outputs);

/// <summary><c>comparisons[]</c>: <see cref="ComparisonReport"/> with its name first.</summary>
internal sealed record ComparisonJson(string Name, ModelRole Actual, ModelRole Reference, bool Gated, IReadOnlyList<OutputComparison> Outputs);

/// <summary><c>latency</c>: <see cref="LatencyReport"/> with each model's statistics flattened into its entry.</summary>
internal sealed record LatencyJson(
    string Mode,
    int Warmup,
    int Rounds,
    double? DurationSeconds,
    long BatchSize,
    long TokensPerRun,
    string Binding,
    IReadOnlyList<ModelLatencyJson> Models,
    IReadOnlyList<LatencyRatio> Ratios)
{
    public static LatencyJson From(LatencyReport l) => new(
        l.Mode, l.Warmup, l.Rounds, l.DurationSeconds, l.BatchSize, l.TokensPerRun, l.Binding,
        [.. l.Models.Select(m => new ModelLatencyJson(m.Role, m.Stats.Count, m.Stats.MeanMs, m.Stats.StdMs, m.Stats.MinMs, m.Stats.P50Ms,
            m.Stats.P90Ms, m.Stats.P95Ms, m.Stats.P99Ms, m.Stats.MaxMs, m.SequencesPerSecond, m.TokensPerSecond, m.SamplesMs))],
        l.Ratios);
}

/// <summary><c>latency.models[]</c>.</summary>
internal sealed record ModelLatencyJson(
    ModelRole Role,
    int Count,
    double MeanMs,
    double StdMs,
    double MinMs,
    double P50Ms,
    double P90Ms,
    double P95Ms,
    double P99Ms,
    double MaxMs,
    double SequencesPerSecond,
    double TokensPerSecond,
    IReadOnlyList<double> SamplesMs);

/// <summary>
/// The source-generated serializer of <see cref="ReportJson"/>: camelCase fields, every field written (nulls
/// included), enums as camelCase strings, element types by <see cref="OrtTypes.ReportName"/>, non-finite numbers
/// as null.
/// </summary>
[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    DefaultIgnoreCondition = JsonIgnoreCondition.Never,
    WriteIndented = true,
    Converters =
    [
        typeof(FiniteOrNullConverter),
        typeof(ElementTypeConverter),
        typeof(CamelCaseEnumConverter<ValidationStatus>),
        typeof(CamelCaseEnumConverter<ExecutionDevice>),
        typeof(CamelCaseEnumConverter<PaddingSide>),
        typeof(CamelCaseEnumConverter<GraphOptimization>),
        typeof(CamelCaseEnumConverter<ModelRole>),
    ])]
[JsonSerializable(typeof(ReportJson))]
internal sealed partial class ReportJsonContext : JsonSerializerContext;

/// <summary>Writes NaN and ±Infinity as null (JSON has no such numbers); reads null back as NaN.</summary>
internal sealed class FiniteOrNullConverter : JsonConverter<double>
{
    public override bool HandleNull => true;

    public override double Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
        reader.TokenType == JsonTokenType.Null ? double.NaN : reader.GetDouble();

    public override void Write(Utf8JsonWriter writer, double value, JsonSerializerOptions options)
    {
        if (double.IsFinite(value))
        {
            writer.WriteNumberValue(value);
        }
        else
        {
            writer.WriteNullValue();
        }
    }
}

/// <summary>Element types as the report names them ("float32", "bfloat16", "int64", "bool").</summary>
internal sealed class ElementTypeConverter : JsonConverter<DType>
{
    public override DType Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        string? name = reader.GetString();
        foreach (var dtype in Enum.GetValues<DType>())
        {
            if (dtype.ReportName() == name)
            {
                return dtype;
            }
        }
        throw new JsonException($"element type {name ?? "null"} is not one of {string.Join(", ", Enum.GetValues<DType>().Select(d => d.ReportName()))}.");
    }

    public override void Write(Utf8JsonWriter writer, DType value, JsonSerializerOptions options) =>
        writer.WriteStringValue(value.ReportName());
}

/// <summary>Enum values as camelCase strings ("merged", "gateFailed"); numbers are not accepted when reading.</summary>
internal sealed class CamelCaseEnumConverter<TEnum>() : JsonStringEnumConverter<TEnum>(JsonNamingPolicy.CamelCase, allowIntegerValues: false)
    where TEnum : struct, Enum;
