using OnnxLora.Core;
using OnnxLora.Validate.Internals;

namespace OnnxLora.Validate;

/// <summary>Outcome of a validation run.</summary>
public enum ValidationStatus
{
    /// <summary>Every enabled gate passed.</summary>
    Pass,

    /// <summary>At least one gate failed; <see cref="ValidationReport.Failures"/> says which.</summary>
    GateFailed,
}

/// <summary>The part a model (or the eager reference) plays in a validation run.</summary>
public enum ModelRole
{
    Merged,
    Unmerged,
    Base,
    Eager,

    /// <summary>The adapter-ready graph (LoRA factors as inputs) with an ONNX Runtime adapter file active.</summary>
    Adapter,
}

/// <summary>
/// Everything a validation run found. <see cref="ReportWriter"/> writes it as JSON (schema
/// <see cref="SchemaId"/>, documented field by field in docs/report-schema.md), Markdown and HTML.
/// </summary>
public sealed partial record ValidationReport
{
    /// <summary>The JSON schema identifier and version.</summary>
    public const string SchemaId = "onnxlora.validation/3";

    /// <summary>The earlier schema <see cref="Load"/> still reads: <c>/3</c> without <see cref="Decode"/> and the decode options.</summary>
    public const string PreviousSchemaId = "onnxlora.validation/2";

    public required ValidationStatus Status { get; init; }

    public required DateTimeOffset CreatedUtc { get; init; }

    /// <summary>Version of OnnxLora.Validate that wrote the report.</summary>
    public required string ToolVersion { get; init; }

    /// <summary>Version of the ONNX Runtime native library.</summary>
    public required string OnnxRuntimeVersion { get; init; }

    /// <summary>The machine the run was made on: what reports must share to be compared.</summary>
    public required MachineReport Machine { get; init; }

    public required ValidationOptions Options { get; init; }

    public required ProviderReport Provider { get; init; }

    public required InputsReport Inputs { get; init; }

    public required IReadOnlyList<ModelReport> Models { get; init; }

    public required IReadOnlyList<ComparisonReport> Comparisons { get; init; }

    /// <summary>Null when latency was not measured (<see cref="ValidationOptions.Runs"/> 0 and no duration).</summary>
    public LatencyReport? Latency { get; init; }

    /// <summary>Greedy generation through the key/value cache; null unless <see cref="ValidationOptions.DecodeTokens"/> &gt; 0.</summary>
    public DecodeReport? Decode { get; init; }

    /// <summary>
    /// This run's latency compared with <see cref="ValidationOptions.BaselineReport"/>'s; null when no baseline was given.
    /// </summary>
    public BaselineComparison? Baseline { get; init; }

    /// <summary>Peak resident memory of the process (VmHWM), null where /proc/self/status is not available.</summary>
    public long? PeakMemoryBytes { get; init; }

    /// <summary>The task metric of every model on <see cref="ValidationOptions.DataFile"/>; null without a data file.</summary>
    public TaskMetricsReport? TaskMetrics { get; init; }

    public required IReadOnlyList<GateReport> Gates { get; init; }

    public required IReadOnlyList<GateFailure> Failures { get; init; }

    public required IReadOnlyList<string> Warnings { get; init; }

    /// <summary>True when <see cref="Status"/> is <see cref="ValidationStatus.Pass"/>.</summary>
    public bool Passed => Status == ValidationStatus.Pass;
}

/// <summary>Which execution provider ran, why, and the session settings every model shared.</summary>
/// <param name="Requested">The requested device.</param>
/// <param name="DeviceId">The requested CUDA device ordinal.</param>
/// <param name="AllowCpuFallback">Whether CPU fallback was allowed.</param>
/// <param name="Used">The provider that ran: "CUDAExecutionProvider" or "CPUExecutionProvider".</param>
/// <param name="FallbackReason">Why CUDA was not used when it was requested (ONNX Runtime's messages), else null.</param>
/// <param name="Session">Session options shared by every model.</param>
public sealed record ProviderReport(
    ExecutionDevice Requested,
    int DeviceId,
    bool AllowCpuFallback,
    string Used,
    string? FallbackReason,
    SessionSettings Session)
{
    /// <summary>
    /// The execution provider options OnnxLora set (<c>device_id</c> for CUDA; none for CPU); every other option is
    /// ONNX Runtime's default for <see cref="ValidationReport.OnnxRuntimeVersion"/>.
    /// </summary>
    public IReadOnlyList<ProviderOption> Options { get; init; } = [];

    /// <summary>
    /// <see cref="FallbackReason"/> in a few words for a console line: the first library that could not be loaded
    /// ("libcublasLt.so.13 not found"), else the first line of ONNX Runtime's message; null when CUDA was not skipped.
    /// </summary>
    public string? ShortFallbackReason() => FallbackReason is null ? null : SessionFactory.ShortReason(FallbackReason);
}

/// <summary>One execution provider option as ONNX Runtime names it (<c>device_id</c> = <c>0</c>).</summary>
public sealed record ProviderOption(string Name, string Value);

/// <summary>
/// The machine a report was made on. Reports are compared only when these agree (see <see cref="RunComparer"/>).
/// </summary>
/// <param name="Os">Operating system and kernel as .NET describes them.</param>
/// <param name="Architecture">Process architecture ("X64", "Arm64").</param>
/// <param name="CpuModel">CPU model name (Linux: "model name" of /proc/cpuinfo), "unknown" where not found.</param>
/// <param name="LogicalCores">Logical processors this process may use (<see cref="Environment.ProcessorCount"/>: affinity and container limits applied).</param>
/// <param name="MemoryBytes">Physical memory (Linux: MemTotal of /proc/meminfo), else the memory .NET may use; null where unknown.</param>
/// <param name="Gpu">The GPU the models ran on; null unless CUDA ran.</param>
public sealed record MachineReport(string Os, string Architecture, string CpuModel, int LogicalCores, long? MemoryBytes, GpuReport? Gpu);

/// <summary>The CUDA device the models ran on.</summary>
/// <param name="DeviceId">CUDA device ordinal.</param>
/// <param name="Name">Model name (Linux: /proc/driver/nvidia/gpus/*/information), null where not found.</param>
/// <param name="Driver">NVIDIA driver version (Linux: /proc/driver/nvidia/version), null where not found.</param>
public sealed record GpuReport(int DeviceId, string? Name, string? Driver);

/// <summary>The ONNX Runtime session options every model was loaded with.</summary>
/// <param name="IntraOpThreads">Intra-op threads; 0: ONNX Runtime chose.</param>
/// <param name="InterOpThreads">Inter-op threads; 0: ONNX Runtime chose.</param>
/// <param name="GraphOptimization">Graph optimisation level.</param>
/// <param name="ExecutionMode">"sequential" (the only mode used).</param>
/// <param name="CpuMemArena">ONNX Runtime's <c>enable_cpu_mem_arena</c> (<see cref="ValidationOptions.CpuMemArena"/>); reports from before it was recorded read as true, the only setting then.</param>
public sealed record SessionSettings(int IntraOpThreads, int InterOpThreads, GraphOptimization GraphOptimization, string ExecutionMode, bool CpuMemArena = true);

/// <summary>The inputs every model was fed.</summary>
/// <param name="Generated">True when generated from the graphs' declared inputs, false when read from files.</param>
/// <param name="VocabSize">Vocabulary the generated token ids were drawn from, null when not needed or known.</param>
/// <param name="VocabSource">Where <paramref name="VocabSize"/> came from.</param>
/// <param name="Tensors">Each input.</param>
public sealed record InputsReport(bool Generated, long? VocabSize, string? VocabSource, IReadOnlyList<InputSummary> Tensors);

/// <summary>One input: name, type, shape and where its values came from.</summary>
public sealed record InputSummary(string Name, DType ElementType, IReadOnlyList<long> Shape, string Source);

/// <summary>A graph input or output as declared: name, element type and dimensions (numbers or symbolic names).</summary>
public sealed record TensorSignature(string Name, DType ElementType, IReadOnlyList<string> Dims);

/// <summary>One ONNX model: file sizes, load cost and declared signature.</summary>
/// <param name="Role">The model's role.</param>
/// <param name="Path">Full path of the .onnx file.</param>
/// <param name="FileBytes">Size of the .onnx file.</param>
/// <param name="ExternalDataBytes">Total size of the external data files it references.</param>
/// <param name="ExternalDataFiles">Those files, as the model names them.</param>
/// <param name="SessionCreateMs">Time to create the InferenceSession.</param>
/// <param name="RssDeltaBytes">Growth of resident memory while creating the session, null where unknown.</param>
/// <param name="Inputs">Declared inputs.</param>
/// <param name="Outputs">Declared outputs.</param>
public sealed record ModelReport(
    ModelRole Role,
    string Path,
    long FileBytes,
    long ExternalDataBytes,
    IReadOnlyList<string> ExternalDataFiles,
    double SessionCreateMs,
    long? RssDeltaBytes,
    IReadOnlyList<TensorSignature> Inputs,
    IReadOnlyList<TensorSignature> Outputs)
{
    /// <summary>
    /// SHA-256 (lower-case hex) of the .onnx file's bytes followed by the bytes of each file of
    /// <see cref="ExternalDataFiles"/> in that order: equal hashes mean the same model.
    /// </summary>
    public required string ContentSha256 { get; init; }

    /// <summary>With <see cref="ModelRole.Adapter"/>: the ONNX Runtime adapter file active in every run; else null.</summary>
    public string? ActiveAdapter { get; init; }

    /// <summary>File plus external data.</summary>
    public long TotalBytes => FileBytes + ExternalDataBytes;
}

/// <summary>The merged model's outputs compared with a reference's.</summary>
/// <param name="Actual">Always <see cref="ModelRole.Merged"/>.</param>
/// <param name="Reference">The reference.</param>
/// <param name="Gated">Whether tolerance and top-1 gates apply (false for the base model, which differs by design).</param>
/// <param name="Outputs">One entry per compared output.</param>
public sealed record ComparisonReport(ModelRole Actual, ModelRole Reference, bool Gated, IReadOnlyList<OutputComparison> Outputs)
{
    /// <summary>"merged vs unmerged" and the like; "merged vs unmerged (decode)" for the decode logits the gates see.</summary>
    public string Name => $"{Actual.ToString().ToLowerInvariant()} vs {Reference.ToString().ToLowerInvariant()}{(Decode ? " (decode)" : "")}";

    /// <summary>The per-step logits of <see cref="DecodeComparison"/>, as the gates see them (not written: the report has them under decode).</summary>
    internal bool Decode { get; init; }
}

/// <summary>
/// Error metrics of one output, computed in double precision over the element pairs where both values are finite.
/// Relative error of an element is |a − r| / max(|r|, <see cref="RelativeErrorFloor"/>).
/// </summary>
public sealed record OutputComparison
{
    /// <summary>Denominator floor of the relative error.</summary>
    public const double RelativeErrorFloor = 1e-6;

    public required string Name { get; init; }

    public required IReadOnlyList<long> Shape { get; init; }

    public required DType ActualType { get; init; }

    /// <summary>Element type of the reference output (<see cref="DType.F32"/> for the eager reference).</summary>
    public required DType ReferenceType { get; init; }

    public required long Elements { get; init; }

    public required double MaxAbsError { get; init; }

    public required double MaxRelError { get; init; }

    public required double RmsError { get; init; }

    /// <summary>dot(a, r) / (‖a‖·‖r‖); 1 when both are all zeros, 0 when only one is.</summary>
    public required double CosineSimilarity { get; init; }

    /// <summary>Largest |r| (the scale the errors compare with).</summary>
    public required double ReferenceMaxAbs { get; init; }

    /// <summary>Elements with |a − r| &gt; atol + rtol·|r|, non-finite pairs included.</summary>
    public required long BeyondTolerance { get; init; }

    public required long NonFiniteActual { get; init; }

    public required long NonFiniteReference { get; init; }

    /// <summary>Index of the largest absolute error, null when no finite pair differs.</summary>
    public IReadOnlyList<long>? WorstIndex { get; init; }

    public double? WorstActual { get; init; }

    public double? WorstReference { get; init; }

    /// <summary>Share of positions (all but the last dimension) whose argmax over the last dimension agrees; only for the logits output.</summary>
    public double? Top1Agreement { get; init; }

    public long? Top1Positions { get; init; }
}

/// <summary>Latency of every ONNX model, measured in interleaved rounds (each round runs each model once, in rotating order).</summary>
/// <param name="Mode">"runs" (a fixed count) or "duration" (rounds until a time budget is spent).</param>
/// <param name="Warmup">Untimed runs per model before timing.</param>
/// <param name="Rounds">Timed rounds (samples per model).</param>
/// <param name="DurationSeconds">The budget in duration mode, else null.</param>
/// <param name="BatchSize">Sequences per run.</param>
/// <param name="TokensPerRun">Tokens per run (batch × sequence of input_ids, padding included).</param>
/// <param name="Binding">How inputs and outputs were bound.</param>
/// <param name="Models">Per-model statistics and samples.</param>
/// <param name="Ratios">Per-round latency ratios.</param>
public sealed record LatencyReport(
    string Mode,
    int Warmup,
    int Rounds,
    double? DurationSeconds,
    long BatchSize,
    long TokensPerRun,
    string Binding,
    IReadOnlyList<ModelLatency> Models,
    IReadOnlyList<LatencyRatio> Ratios)
{
    /// <summary>
    /// Runs timed together as one sample, the same for every model; samples and statistics are per run (the group's mean).
    /// Above 1 when the fastest model runs in under 10 ms, so one scheduler preemption cannot decide a sample. 1 in reports
    /// written before it.
    /// </summary>
    public int RunsPerSample { get; init; } = 1;
}

/// <summary>One model's latency: statistics, throughput and the samples in round order.</summary>
public sealed record ModelLatency(ModelRole Role, LatencyStats Stats, double SequencesPerSecond, double TokensPerSecond, IReadOnlyList<double> SamplesMs);

/// <summary>Summary statistics in milliseconds (sample standard deviation; percentiles by linear interpolation).</summary>
public sealed record LatencyStats(int Count, double MeanMs, double StdMs, double MinMs, double P50Ms, double P90Ms, double P95Ms, double P99Ms, double MaxMs);

/// <summary>
/// Ratio of two models' latencies taken within the same round, so drift of the machine cancels:
/// median, mean and spread (p10/p90, quartiles) of the per-round ratios.
/// </summary>
public sealed record LatencyRatio(string Name, ModelRole Numerator, ModelRole Denominator, int Pairs, double Median, double Mean, double P10, double P90, double Q25, double Q75);

/// <summary>One gate: whether it was enabled, its limit and whether it passed.</summary>
public sealed record GateReport(string Gate, bool Enabled, bool Passed, string Limit, string Detail);

/// <summary>One gate failure: the gate, the comparison and output, the value found and the limit.</summary>
public sealed record GateFailure(string Gate, string? Comparison, string? Output, double? Value, double? Limit, string Message);
