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
/// the JSON's (<see cref="MachineReport"/>, <see cref="ProviderReport"/>, <see cref="InputsReport"/>,
/// <see cref="TensorSignature"/>, <see cref="OutputComparison"/>, <see cref="LatencyRatio"/>,
/// <see cref="BaselineLatency"/>, <see cref="GateReport"/>, <see cref="GateFailure"/>) are written as they are.
/// Property order is field order. The same records read the file back (<see cref="ToReport"/>, ReportReader.cs);
/// fields added after <c>/2</c> (<c>decode</c>, <c>options.decodeTokens</c>, …) are optional parameters, so a
/// <see cref="ValidationReport.PreviousSchemaId"/> report, which lacks them, reads with their defaults.
/// </summary>
internal sealed record ReportJson(
    string Schema,
    ValidationStatus Status,
    string CreatedUtc,
    string ToolVersion,
    string OnnxRuntimeVersion,
    MachineReport Machine,
    OptionsJson Options,
    ProviderReport Provider,
    InputsReport Inputs,
    IReadOnlyList<ModelJson> Models,
    IReadOnlyList<ComparisonJson> Comparisons,
    LatencyJson? Latency,
    BaselineJson? Baseline,
    long? PeakMemoryBytes,
    IReadOnlyList<GateReport> Gates,
    IReadOnlyList<GateFailure> Failures,
    IReadOnlyList<string> Warnings,
    TaskMetricsReport? TaskMetrics = null,
    DecodeReport? Decode = null)
{
    /// <summary>
    /// The generated options plus what the attribute cannot say: text is not escaped beyond what JSON requires
    /// (the report is a file, not HTML), so "·", "≤" and "+" stay readable.
    /// </summary>
    internal static readonly ReportJsonContext Context = new(new JsonSerializerOptions(ReportJsonContext.Default.Options)
    {
        TypeInfoResolver = null,
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    });

    /// <summary>The indented JSON text, without a final newline.</summary>
    public string Serialize() => JsonSerializer.Serialize(this, Context.ReportJson);

    public static ReportJson From(ValidationReport r) => new(
        ValidationReport.SchemaId,
        r.Status,
        ReportTime.Format(r.CreatedUtc),
        r.ToolVersion,
        r.OnnxRuntimeVersion,
        r.Machine,
        OptionsJson.From(r.Options),
        r.Provider,
        r.Inputs,
        [.. r.Models.Select(m => new ModelJson(m.Role, m.Path, m.FileBytes, m.ExternalDataBytes, m.TotalBytes, m.ExternalDataFiles,
            m.ContentSha256, m.SessionCreateMs, m.RssDeltaBytes, m.Inputs, m.Outputs) { ActiveAdapter = m.ActiveAdapter })],
        [.. r.Comparisons.Select(c => new ComparisonJson(c.Name, c.Actual, c.Reference, c.Gated, c.Outputs))],
        r.Latency is { } l ? LatencyJson.From(l) : null,
        r.Baseline is { } b ? BaselineJson.From(b) : null,
        r.PeakMemoryBytes,
        r.Gates,
        r.Failures,
        r.Warnings,
        r.TaskMetrics,
        r.Decode);

    /// <summary>The report this JSON describes (the inverse of <see cref="From"/>); fields <see cref="From"/> computes are not read.</summary>
    public ValidationReport ToReport() => new()
    {
        Status = Status,
        CreatedUtc = ReportTime.Parse(CreatedUtc, "createdUtc"),
        ToolVersion = ToolVersion,
        OnnxRuntimeVersion = OnnxRuntimeVersion,
        Machine = Machine,
        Options = Options.ToOptions(),
        Provider = Provider,
        Inputs = Inputs,
        Models = [.. Models.Select(m => new ModelReport(m.Role, m.Path, m.FileBytes, m.ExternalDataBytes, m.ExternalDataFiles,
            m.SessionCreateMs, m.RssDeltaBytes, m.Inputs, m.Outputs) { ContentSha256 = m.ContentSha256, ActiveAdapter = m.ActiveAdapter })],
        Comparisons = [.. Comparisons.Select(c => new ComparisonReport(c.Actual, c.Reference, c.Gated, c.Outputs))],
        Latency = Latency?.ToReport(),
        Baseline = Baseline?.ToComparison(),
        PeakMemoryBytes = PeakMemoryBytes,
        Gates = Gates,
        Failures = Failures,
        Warnings = Warnings,
        TaskMetrics = TaskMetrics,
        Decode = Decode,
    };
}

/// <summary>Times as the report writes them: ISO 8601 UTC ("O").</summary>
internal static class ReportTime
{
    public static string Format(DateTimeOffset t) => t.UtcDateTime.ToString("O", CultureInfo.InvariantCulture);

    /// <exception cref="JsonException">Not an ISO 8601 time; the message names <paramref name="field"/>.</exception>
    public static DateTimeOffset Parse(string text, string field) =>
        DateTimeOffset.TryParseExact(text, "O", CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var t)
            ? t
            : throw new JsonException($"field {field}: found \"{text}\", expected an ISO 8601 UTC time (2026-11-29T09:21:42.7757057Z).");
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
    string? BaselineReport,
    double? MaxRegression,
    bool AllowDifferentMachines,
    int IntraOpThreads,
    int InterOpThreads,
    GraphOptimization GraphOptimization,
    string LogitsOutput,
    string? DataFile = null,
    double? MaxMetricDelta = null,
    int DecodeTokens = 0,
    int PromptTokens = 16,
    int DecodeRuns = 5)
{
    public static OptionsJson From(ValidationOptions o) => new(
        o.Device, o.DeviceId, o.AllowCpuFallback, o.Batch, o.Sequence,
        [.. o.Dims.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => new DimJson(kv.Key, kv.Value))],
        o.Padding, o.PadTokenId, o.Seed, o.VocabSize, o.InputFiles, o.Warmup, o.Runs, o.Duration?.TotalSeconds,
        o.Atol, o.Rtol, o.MinTop1, o.MaxLatencyRatio, o.BaselineReport, o.MaxRegression, o.AllowDifferentMachines,
        o.IntraOpThreads, o.InterOpThreads, o.GraphOptimization, o.LogitsOutput, o.DataFile, o.MaxMetricDelta,
        o.DecodeTokens, o.PromptTokens, o.DecodeRuns);

    public ValidationOptions ToOptions() => new()
    {
        Device = Device,
        DeviceId = DeviceId,
        AllowCpuFallback = AllowCpuFallback,
        Batch = Batch,
        Sequence = Sequence,
        Dims = Dims.ToDictionary(d => d.Name, d => d.Value, StringComparer.Ordinal),
        Padding = Padding,
        PadTokenId = PadTokenId,
        Seed = Seed,
        VocabSize = VocabSize,
        InputFiles = InputFiles,
        Warmup = Warmup,
        Runs = Runs,
        Duration = DurationSeconds is double s ? TimeSpan.FromSeconds(s) : null,
        Atol = Atol,
        Rtol = Rtol,
        MinTop1 = MinTop1,
        MaxLatencyRatio = MaxLatencyRatio,
        BaselineReport = BaselineReport,
        MaxRegression = MaxRegression,
        AllowDifferentMachines = AllowDifferentMachines,
        IntraOpThreads = IntraOpThreads,
        InterOpThreads = InterOpThreads,
        GraphOptimization = GraphOptimization,
        LogitsOutput = LogitsOutput,
        DataFile = DataFile,
        MaxMetricDelta = MaxMetricDelta,
        DecodeTokens = DecodeTokens,
        PromptTokens = PromptTokens,
        DecodeRuns = DecodeRuns,
    };
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
    string ContentSha256,
    double SessionCreateMs,
    long? RssDeltaBytes,
    IReadOnlyList<TensorSignature> Inputs,
    IReadOnlyList<TensorSignature> Outputs)
{
    /// <summary><c>activeAdapter</c>: written always (null when none); optional when read, as reports written before it lack it.</summary>
    public string? ActiveAdapter { get; init; }
}

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
    /// <summary>
    /// <c>runsPerSample</c>: written always; optional when read (1), as reports written before it lack it. Nullable because the
    /// source-generated reader sets a missing init-only property to its type's default, not to the initializer's value.
    /// </summary>
    public int? RunsPerSample { get; init; }

    public static LatencyJson From(LatencyReport l) => new(
        l.Mode, l.Warmup, l.Rounds, l.DurationSeconds, l.BatchSize, l.TokensPerRun, l.Binding,
        [.. l.Models.Select(m => new ModelLatencyJson(m.Role, m.Stats.Count, m.Stats.MeanMs, m.Stats.StdMs, m.Stats.MinMs, m.Stats.P50Ms,
            m.Stats.P90Ms, m.Stats.P95Ms, m.Stats.P99Ms, m.Stats.MaxMs, m.SequencesPerSecond, m.TokensPerSecond, m.SamplesMs))],
        l.Ratios)
    {
        RunsPerSample = l.RunsPerSample,
    };

    public LatencyReport ToReport() => new(
        Mode, Warmup, Rounds, DurationSeconds, BatchSize, TokensPerRun, Binding,
        [.. Models.Select(m => new ModelLatency(m.Role, new LatencyStats(m.Count, m.MeanMs, m.StdMs, m.MinMs, m.P50Ms, m.P90Ms, m.P95Ms, m.P99Ms, m.MaxMs),
            m.SequencesPerSecond, m.TokensPerSecond, m.SamplesMs))],
        Ratios)
    {
        RunsPerSample = RunsPerSample ?? 1,
    };
}

/// <summary><c>baseline</c>: <see cref="BaselineComparison"/> with its time as text and differences without the report label.</summary>
internal sealed record BaselineJson(
    string Path,
    string CreatedUtc,
    double? MaxRegression,
    double Confidence,
    int Resamples,
    int Seed,
    IReadOnlyList<DifferenceJson> Differences,
    IReadOnlyList<BaselineLatency> Models)
{
    /// <summary>The label differences of a validation run carry: the run itself.</summary>
    public const string ThisRun = "this run";

    public static BaselineJson From(BaselineComparison b) => new(
        b.Path, ReportTime.Format(b.CreatedUtc), b.MaxRegression, b.Confidence, b.Resamples, b.Seed,
        [.. b.Differences.Select(d => new DifferenceJson(d.Field, d.Kind, d.Baseline, d.Found))], b.Models);

    public BaselineComparison ToComparison() => new(
        Path, ReportTime.Parse(CreatedUtc, "baseline.createdUtc"), MaxRegression, Confidence, Resamples, Seed,
        [.. Differences.Select(d => new SettingDifference(ThisRun, d.Field, d.Kind, d.Baseline, d.Found))], Models);
}

/// <summary><c>baseline.differences[]</c>.</summary>
internal sealed record DifferenceJson(string Field, DifferenceKind Kind, string Baseline, string Found);

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
/// as null. Reading is strict: every field must be present and only nullable fields may be null.
/// </summary>
[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    DefaultIgnoreCondition = JsonIgnoreCondition.Never,
    WriteIndented = true,
    RespectNullableAnnotations = true,
    RespectRequiredConstructorParameters = true,
    Converters =
    [
        typeof(FiniteOrNullConverter),
        typeof(ElementTypeConverter),
        typeof(CamelCaseEnumConverter<ValidationStatus>),
        typeof(CamelCaseEnumConverter<ExecutionDevice>),
        typeof(CamelCaseEnumConverter<PaddingSide>),
        typeof(CamelCaseEnumConverter<GraphOptimization>),
        typeof(CamelCaseEnumConverter<ModelRole>),
        typeof(CamelCaseEnumConverter<LatencyVerdict>),
        typeof(CamelCaseEnumConverter<DifferenceKind>),
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
        throw new JsonException($"one of {string.Join(", ", Enum.GetValues<DType>().Select(d => d.ReportName()))} (an element type)");
    }

    public override void Write(Utf8JsonWriter writer, DType value, JsonSerializerOptions options) =>
        writer.WriteStringValue(value.ReportName());
}

/// <summary>Enum values as camelCase strings ("merged", "gateFailed"); numbers are not accepted when reading.</summary>
internal sealed class CamelCaseEnumConverter<TEnum>() : JsonStringEnumConverter<TEnum>(JsonNamingPolicy.CamelCase, allowIntegerValues: false)
    where TEnum : struct, Enum;
