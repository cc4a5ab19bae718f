namespace OnnxLora.Validate;

/// <summary>Where the models run.</summary>
public enum ExecutionDevice
{
    /// <summary>CUDA when it loads, otherwise CPU (the reason is recorded in the report).</summary>
    Auto,

    /// <summary>CUDA; falls back to CPU only when <see cref="ValidationOptions.AllowCpuFallback"/> is true.</summary>
    Cuda,

    /// <summary>ONNX Runtime's CPU execution provider.</summary>
    Cpu,
}

/// <summary>How generated <c>attention_mask</c> inputs are padded.</summary>
public enum PaddingSide
{
    /// <summary>Every position is a real token (mask of ones).</summary>
    None,

    /// <summary>Rows after the first end with padding (mask zeros at the end).</summary>
    Right,

    /// <summary>Rows after the first start with padding (mask zeros at the start).</summary>
    Left,
}

/// <summary>ONNX Runtime graph optimisation level used for every session.</summary>
public enum GraphOptimization
{
    None,
    Basic,
    Extended,
    All,
}

/// <summary>
/// Options of a validation run. Every model compared gets the same session options and the same inputs.
/// Change with <c>with</c>: <c>ValidationOptions.Default with { Runs = 100 }</c>.
/// </summary>
public sealed record ValidationOptions
{
    /// <summary>All defaults.</summary>
    public static ValidationOptions Default { get; } = new();

    /// <summary>Execution device. Default <see cref="ExecutionDevice.Auto"/>.</summary>
    public ExecutionDevice Device { get; init; } = ExecutionDevice.Auto;

    /// <summary>CUDA device ordinal. Default 0.</summary>
    public int DeviceId { get; init; }

    /// <summary>With <see cref="ExecutionDevice.Cuda"/>: fall back to CPU when CUDA cannot be used. Default true. Auto always falls back.</summary>
    public bool AllowCpuFallback { get; init; } = true;

    /// <summary>Value of symbolic batch dimensions of generated inputs. Default 1.</summary>
    public int Batch { get; init; } = 1;

    /// <summary>Value of symbolic sequence dimensions of generated inputs. Default 128.</summary>
    public int Sequence { get; init; } = 128;

    /// <summary>
    /// Values for other symbolic dimensions by name (for example <c>past_sequence_length</c> = 0). They win over
    /// <see cref="Batch"/> and <see cref="Sequence"/>. Default none.
    /// </summary>
    public IReadOnlyDictionary<string, long> Dims { get; init; } = new Dictionary<string, long>();

    /// <summary>Padding of the generated <c>attention_mask</c>. Default <see cref="PaddingSide.None"/>.</summary>
    public PaddingSide Padding { get; init; } = PaddingSide.None;

    /// <summary>Token id written at padded positions of generated <c>input_ids</c>. Default 0.</summary>
    public long PadTokenId { get; init; }

    /// <summary>Seed of the generated inputs. Default 1234.</summary>
    public int Seed { get; init; } = 1234;

    /// <summary>
    /// Vocabulary size for generated token ids. Default null: taken from the last dimension of the
    /// <see cref="LogitsOutput"/> output, or from the rows of the embedding initializer that <c>input_ids</c> indexes.
    /// </summary>
    public long? VocabSize { get; init; }

    /// <summary>
    /// User-supplied inputs instead of generated ones: <c>.json</c> files (an object mapping input name to a nested
    /// array) and <c>.npy</c> files (one input each, named by the file name without extension, or written
    /// <c>name=path.npy</c>). When given, every input a model declares must be supplied. Default none.
    /// </summary>
    public IReadOnlyList<string> InputFiles { get; init; } = [];

    /// <summary>Untimed runs of each model before timing. Default 3.</summary>
    public int Warmup { get; init; } = 3;

    /// <summary>
    /// Timed rounds (interleaved; each times every model once — a group of runs for a model under 10 ms, see
    /// <see cref="LatencyReport.RunsPerSample"/>). 0 with no <see cref="Duration"/> skips latency. Default 20.
    /// </summary>
    public int Runs { get; init; } = 20;

    /// <summary>When set, timed rounds continue until this much time has passed (at least one round) instead of <see cref="Runs"/>.</summary>
    public TimeSpan? Duration { get; init; }

    /// <summary>
    /// Tokens to generate greedily through the with-past graphs (inputs <c>past_key_values.{i}.key</c> / <c>.value</c>,
    /// outputs <c>present.{i}.*</c>, the names of Hugging Face Optimum's and ONNX Runtime GenAI's decoder exports) to
    /// measure the time to first token and the latency per token, and to compare the merged model's generated tokens
    /// and per-step logits with each reference's (<see cref="ValidationReport.Decode"/>). Every model must have the
    /// key/value cache. 0 skips decoding; otherwise at least 2 (the first token comes from the prefill). Default 0.
    /// </summary>
    public int DecodeTokens { get; init; }

    /// <summary>Prompt length of the decode measurement (generated token ids, seeded, <see cref="Batch"/> rows). Default 16.</summary>
    public int PromptTokens { get; init; } = 16;

    /// <summary>Timed generations per model of the decode measurement (interleaved rounds, after <see cref="Warmup"/> untimed ones). Default 5.</summary>
    public int DecodeRuns { get; init; } = 5;

    /// <summary>Absolute tolerance: an element fails when |actual − reference| &gt; Atol + Rtol·|reference|. Default 1e-3.</summary>
    public double Atol { get; init; } = 1e-3;

    /// <summary>Relative tolerance (see <see cref="Atol"/>). Default 1e-3.</summary>
    public double Rtol { get; init; } = 1e-3;

    /// <summary>Least share of logits positions whose top-1 token must agree. Default 0.99.</summary>
    public double MinTop1 { get; init; } = 0.99;

    /// <summary>Largest allowed median merged/base latency ratio; null disables the gate. Default null.</summary>
    public double? MaxLatencyRatio { get; init; }

    /// <summary>
    /// A validation.json of an earlier run (schema <see cref="ValidationReport.SchemaId"/>) to compare this run's latency
    /// with, model by model (<see cref="ValidationReport.Baseline"/>). It must come from the same machine and settings
    /// unless <see cref="AllowDifferentMachines"/>. Needs latency measured. Default null: no baseline.
    /// </summary>
    public string? BaselineReport { get; init; }

    /// <summary>
    /// Largest tolerated slowdown of the merged model against <see cref="BaselineReport"/>, as a fraction (0.05 = 5%):
    /// the <c>max-regression</c> gate fails when the lower end of the confidence interval of the ratio of median
    /// latencies (this run / baseline) exceeds 1 + MaxRegression. Needs a baseline. Default null: gate off.
    /// </summary>
    public double? MaxRegression { get; init; }

    /// <summary>
    /// Compare with a <see cref="BaselineReport"/> from another machine or with other settings; the differing fields are
    /// listed in the report. Default false: such a baseline is refused (bad input) naming the first differing field.
    /// </summary>
    public bool AllowDifferentMachines { get; init; }

    /// <summary>Intra-op threads of every session; 0 lets ONNX Runtime choose. Default 0.</summary>
    public int IntraOpThreads { get; init; }

    /// <summary>Inter-op threads of every session; 0 lets ONNX Runtime choose. Default 0.</summary>
    public int InterOpThreads { get; init; }

    /// <summary>Graph optimisation level of every session. Default <see cref="GraphOptimization.All"/>.</summary>
    public GraphOptimization GraphOptimization { get; init; } = GraphOptimization.All;

    /// <summary>
    /// ONNX Runtime's <c>enable_cpu_mem_arena</c> for every session. Default true. Off, memory of the CPU provider is
    /// returned to the system when a tensor is released instead of being kept in the arena for reuse. With
    /// <see cref="GraphOptimization.None"/> this is how an fp16 model larger than half the machine's memory is validated
    /// on CPU: the CPU provider has no fp16 MatMul on x64, so ONNX Runtime puts a Cast to fp32 in front of every weight,
    /// and constant folding (every optimisation level above none) turns those into fp32 copies of all weights held for
    /// the session's lifetime; without folding the casts run at inference and the fp16 weights stay in the mapped
    /// external data files. Measured numbers: docs/benchmarks-merge.md.
    /// </summary>
    public bool CpuMemArena { get; init; } = true;

    /// <summary>Name of the output whose top-1 agreement is measured. Default "logits".</summary>
    public string LogitsOutput { get; init; } = "logits";

    /// <summary>
    /// A JSON Lines task data file (the trainer's pre-tokenized format: <c>{"input_ids": [...], "label": k}</c> for
    /// classifiers, <c>{"input_ids": [...]}</c> for causal LMs) on which every model's task metric is measured
    /// (<see cref="ValidationReport.TaskMetrics"/>). Default none.
    /// </summary>
    public string? DataFile { get; init; }

    /// <summary>
    /// Largest allowed |merged − unmerged| difference of the task metric (accuracy as a fraction 0..1, or
    /// perplexity); needs <see cref="DataFile"/> and an unmerged model. Default none (not gated).
    /// </summary>
    public double? MaxMetricDelta { get; init; }
}
