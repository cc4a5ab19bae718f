using OnnxLora.Core;
using OnnxLora.Core.Peft;
using OnnxLora.Models;
using OnnxLora.Training.Data;

namespace OnnxLora.Training;

/// <summary>
/// Settings of a LoRA training run. Defaults follow PEFT's <c>LoraConfig</c> and PyTorch's AdamW
/// (betas 0.9/0.999, eps 1e-8, weight decay 0.01); change them with <c>with</c>.
/// </summary>
public sealed record TrainerOptions
{
    /// <summary>
    /// The adapter to train, as PEFT's <c>LoraConfig</c> (the same type that is saved as adapter_config.json
    /// and read back for merging): r, lora_alpha, target_modules (null picks the family's PEFT default:
    /// q_proj, v_proj for LLaMA; query, value for BERT), rank_pattern / alpha_pattern, use_rslora,
    /// use_dora, lora_dropout, init_lora_weights ("true" or "gaussian"). task_type,
    /// base_model_name_or_path and modules_to_save are filled in by the trainer. Default: r 8,
    /// lora_alpha 16, the family's targets.
    /// </summary>
    public PeftAdapterConfig Lora { get; init; } = new() { R = 8, Alpha = 16 };

    /// <summary>Passes over the training split; used when <see cref="Steps"/> is null. Default 1.</summary>
    public int Epochs { get; init; } = 1;

    /// <summary>Number of optimizer steps; overrides <see cref="Epochs"/> when set (data repeats as needed).</summary>
    public int? Steps { get; init; }

    /// <summary>Peak learning rate. Default 2e-4.</summary>
    public double LearningRate { get; init; } = 2e-4;

    /// <summary>Linear warm-up steps before the cosine decay. Default 0.</summary>
    public int WarmupSteps { get; init; }

    /// <summary>AdamW decoupled weight decay. Default 0.01 (PyTorch's AdamW default; TorchSharp's is 0).</summary>
    public double WeightDecay { get; init; } = 0.01;

    /// <summary>Gradients are clipped to this global L2 norm; 0 disables clipping. Default 1.0.</summary>
    public double MaxGradNorm { get; init; } = 1.0;

    /// <summary>Sequences per micro-batch. Default 8.</summary>
    public int BatchSize { get; init; } = 8;

    /// <summary>Micro-batches per optimizer step; the loss is normalized over all of them. Default 1.</summary>
    public int GradientAccumulation { get; init; } = 1;

    /// <summary>Sequences are cut to this many tokens. Default 512.</summary>
    public int MaxLength { get; init; } = 512;

    /// <summary>Fraction of the data held out for the evaluation loss, in [0, 1). Default 0.1.</summary>
    public double EvalFraction { get; init; } = 0.1;

    /// <summary>Seeds LoRA initialization, dropout, the split and the data order. Default 42.</summary>
    public int Seed { get; init; } = 42;

    /// <summary>TorchSharp device; only "cpu" is supported. Default "cpu".</summary>
    public string Device { get; init; } = "cpu";

    /// <summary>
    /// Torch intra-op threads for the run (restored afterwards); null keeps the process setting. On
    /// a busy machine 1 thread can be much faster than several. Default null.
    /// </summary>
    public int? Threads { get; init; }

    /// <summary>
    /// Recompute each decoder/encoder layer's forward during backward instead of keeping its activations
    /// (transformers' <c>gradient_checkpointing_enable()</c>, PyTorch's reentrant checkpoint): less memory for
    /// about one more forward per step. Dropout replays the same masks, so losses and gradients are those of a
    /// run without it. It also fixes the process's glibc mmap threshold (<see cref="Core.NativeHeap"/>) so that freed
    /// activation buffers go back to the system, and asks libtorch for transparent huge pages on buffers of 2 MiB and more
    /// so that those fresh mappings fault in faster (effective when the run allocates the process's first tensor). Default false.
    /// </summary>
    public bool GradientCheckpointing { get; init; }

    /// <summary>
    /// With <see cref="GradientCheckpointing"/>: checkpoint only the first this many layers and keep the activations of the
    /// others (Megatron-LM's "block" recomputation), trading memory back for time; a count at least the model's layer
    /// count means all. Null (default): all layers. Losses and gradients are those of a run without checkpointing either way.
    /// </summary>
    public int? GradientCheckpointingLayers { get; init; }

    /// <summary>
    /// With <see cref="GradientCheckpointing"/>: what a checkpointed layer recomputes. <see cref="OnnxLora.Models.GradientCheckpointingGranularity.Full"/>
    /// (default): the whole layer, least memory. <see cref="OnnxLora.Models.GradientCheckpointingGranularity.Selective"/>: only the feed-forward
    /// block up to its activation (Megatron-LM's selective recomputation, applied where this model's largest cheap-to-recompute
    /// activations are), about half the memory saving for about two fifths of the recomputation. Losses and gradients are those of
    /// a run without checkpointing either way.
    /// </summary>
    public GradientCheckpointingGranularity GradientCheckpointingGranularity { get; init; }

    /// <summary>
    /// How the frozen base weights are stored: F32 (default) or BF16, QLoRA-style: the frozen Linear and
    /// Embedding weights in bf16, each computing in bf16 with its output cast back to fp32, while LoRA
    /// factors, optimizer state, norms and the saved adapter stay fp32 (see <c>FrozenBaseWeights</c>).
    /// Halves the base weights' memory; losses follow the fp32 run within bf16 rounding. Not with DoRA.
    /// </summary>
    public DType BaseDType { get; init; } = DType.F32;

    /// <summary>The task; null picks causal LM for decoder checkpoints and sequence classification for encoders.</summary>
    public TrainingTask? Task { get; init; }

    /// <summary>Number of classes for sequence classification; null takes the config's id2label/num_labels, else the largest label + 1.</summary>
    public int? NumLabels { get; init; }

    /// <summary>Evaluate every this many optimizer steps (and always at the end); 0 evaluates only at the start and end. Default 0.</summary>
    public int EvalEverySteps { get; init; }

    /// <summary>Write a resumable checkpoint every this many optimizer steps; 0 never. Needs <see cref="CheckpointDirectory"/>. Default 0.</summary>
    public int CheckpointEverySteps { get; init; }

    /// <summary>Folder for checkpoints (one sub-folder "step-NNNNNN" each). Default null.</summary>
    public string? CheckpointDirectory { get; init; }

    /// <summary>A checkpoint folder to resume from; the run continues exactly as if it had not stopped. Default null.</summary>
    public string? ResumeFrom { get; init; }

    /// <summary>Replace an existing output adapter folder. Default false.</summary>
    public bool Overwrite { get; init; }

    /// <summary>Checks every value; throws a bad-input <see cref="OnnxLoraException"/> naming the option.</summary>
    public void Validate()
    {
        ArgumentNullException.ThrowIfNull(Lora);
        Require(Lora.PeftType == PeftType.Lora, "Lora.PeftType", Lora.PeftType.ToJsonName(), "LORA (LoHa and LoKr adapters are merged, not trained here)");
        Require(Lora.R > 0, "Lora.R", Lora.R, "a positive integer");
        Require(Lora.Alpha > 0 && double.IsFinite(Lora.Alpha), "Lora.Alpha", Lora.Alpha, "a positive finite number");
        Require(Lora.TargetModules is null || Lora.TargetModules.Kind != TargetModulesKind.List || (Lora.TargetModules.Names.Count > 0 && Lora.TargetModules.Names.All(t => !string.IsNullOrWhiteSpace(t))),
            "Lora.TargetModules", Lora.TargetModules?.ToString() ?? "null", "null, a non-empty list of module names, a regex or all-linear");
        Require(Lora.LoraDropout is >= 0 and < 1, "Lora.LoraDropout", Lora.LoraDropout, "a number in [0, 1)");
        Require(Lora.InitWeights is "true" or "gaussian", "Lora.InitWeights", Lora.InitWeights, "\"true\" or \"gaussian\" (other PEFT initialisations are not implemented by the trainer)");
        Require(BaseDType is DType.F32 or DType.BF16, nameof(BaseDType), BaseDType, "F32 or BF16");
        Require(BaseDType == DType.F32 || !Lora.UseDora, nameof(BaseDType), BaseDType, "F32 with DoRA (a DoRA layer recomputes the base product from the weight)");
        Require(GradientCheckpointingLayers is null or > 0, nameof(GradientCheckpointingLayers),
            GradientCheckpointingLayers?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "null", "null or a positive integer");
        Require(GradientCheckpointingLayers is null || GradientCheckpointing, nameof(GradientCheckpointingLayers),
            GradientCheckpointingLayers?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "null", "null unless GradientCheckpointing is on");
        Require(GradientCheckpointingGranularity is GradientCheckpointingGranularity.Full or GradientCheckpointingGranularity.Selective, nameof(GradientCheckpointingGranularity),
            GradientCheckpointingGranularity, "Full or Selective");
        Require(GradientCheckpointingGranularity == GradientCheckpointingGranularity.Full || GradientCheckpointing, nameof(GradientCheckpointingGranularity),
            GradientCheckpointingGranularity, "Full unless GradientCheckpointing is on");
        Require(Epochs > 0, nameof(Epochs), Epochs, "a positive integer");
        Require(Steps is null or > 0, nameof(Steps), Steps?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "null", "null or a positive integer");
        Require(LearningRate > 0 && double.IsFinite(LearningRate), nameof(LearningRate), LearningRate, "a positive finite number");
        Require(WarmupSteps >= 0, nameof(WarmupSteps), WarmupSteps, "a non-negative integer");
        Require(WeightDecay >= 0 && double.IsFinite(WeightDecay), nameof(WeightDecay), WeightDecay, "a non-negative finite number");
        Require(MaxGradNorm >= 0 && double.IsFinite(MaxGradNorm), nameof(MaxGradNorm), MaxGradNorm, "0 (off) or a positive finite number");
        Require(BatchSize > 0, nameof(BatchSize), BatchSize, "a positive integer");
        Require(GradientAccumulation > 0, nameof(GradientAccumulation), GradientAccumulation, "a positive integer");
        Require(MaxLength >= 2, nameof(MaxLength), MaxLength, "an integer of at least 2");
        Require(EvalFraction is >= 0 and < 1, nameof(EvalFraction), EvalFraction, "a number in [0, 1)");
        Require(string.Equals(Device, "cpu", StringComparison.OrdinalIgnoreCase), nameof(Device), Device, "\"cpu\" (training runs on the CPU)");
        Require(Threads is null or > 0, nameof(Threads), Threads?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "null", "null or a positive integer");
        Require(NumLabels is null or >= 2, nameof(NumLabels), NumLabels?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "null", "null or at least 2");
        Require(EvalEverySteps >= 0, nameof(EvalEverySteps), EvalEverySteps, "a non-negative integer");
        Require(CheckpointEverySteps >= 0, nameof(CheckpointEverySteps), CheckpointEverySteps, "a non-negative integer");
        Require(CheckpointEverySteps == 0 || !string.IsNullOrWhiteSpace(CheckpointDirectory), nameof(CheckpointDirectory),
            CheckpointDirectory ?? "null", "a folder when CheckpointEverySteps is set");
    }

    private static void Require(bool ok, string name, object value, string expected)
    {
        if (!ok)
        {
            throw OnnxLoraException.InvalidOption($"TrainerOptions.{name}", string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{value}"), expected);
        }
    }
}
