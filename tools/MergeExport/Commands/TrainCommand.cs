using System.CommandLine;
using System.Globalization;
using OnnxLora.Core;
using OnnxLora.Core.Peft;
using OnnxLora.MergeExport.Internals;
using OnnxLora.Training;

namespace OnnxLora.MergeExport.Commands;

/// <summary><c>train</c>: trains a LoRA adapter on a checkpoint and writes it as a PEFT adapter folder.</summary>
internal sealed class TrainCommand : CliCommand
{
    private readonly Option<string> _model = new("--model") { Description = "Hugging Face checkpoint folder (config.json, safetensors, tokenizer.json or a SentencePiece tokenizer.model).", Required = true };
    private readonly Option<string> _data = new("--data") { Description = "JSON Lines training data ({\"text\": ...} or {\"input_ids\": [...]}).", Required = true };
    private readonly Option<string> _out = new("--out") { Description = "Adapter folder to create.", Required = true };
    private readonly TrainOptionSet _set = new();

    public TrainCommand(CliContext context)
        : base("train", "Train a LoRA adapter with TorchSharp and save it in PEFT format.", context)
    {
        Options.Add(_model);
        Options.Add(_data);
        Options.Add(_out);
        _set.AddTo(this);
    }

    protected override int Execute(ParseResult parse)
    {
        var options = _set.Read(parse) with { Overwrite = Context.Force };
        string outDir = parse.GetValue(_out)!;
        var result = Trainer.Train(parse.GetValue(_model)!, parse.GetValue(_data)!, outDir, options, ProgressPrinter.For(Context), Context.CancellationToken);
        Print(Context, result);
        return Cli.Success;
    }

    internal static void Print(CliContext context, TrainingResult r, bool asStep = false)
    {
        var inv = CultureInfo.InvariantCulture;
        if (context.Json && asStep)
        {
            return;
        }
        if (context.Json)
        {
            context.Out.WriteLine(new CommandResult("train", "passed")
            {
                Outputs = { ["adapter"] = r.AdapterDirectory },
                Details =
                {
                    ["steps"] = r.Steps,
                    ["firstLoss"] = r.LossHistory.Count > 0 ? r.LossHistory[0] : null,
                    ["finalLoss"] = r.FinalLoss,
                    ["initialEvalLoss"] = r.InitialEvalLoss,
                    ["evalLoss"] = r.EvalLoss,
                    ["initialEvalAccuracy"] = r.InitialEvalAccuracy,
                    ["evalAccuracy"] = r.EvalAccuracy,
                    ["tokensPerSecond"] = r.TokensPerSecond,
                    ["trainableParameters"] = r.TrainableParameters,
                    ["totalParameters"] = r.TotalParameters,
                    ["seconds"] = r.Elapsed.TotalSeconds,
                },
            }.ToJson());
            return;
        }
        string first = r.LossHistory.Count > 0 ? r.LossHistory[0].ToString("F4", inv) : "-";
        string eval = r.EvalLoss is { } e ? $", eval loss {r.InitialEvalLoss?.ToString("F4", inv) ?? "-"} → {e.ToString("F4", inv)}" : "";
        if (r.EvalAccuracy is { } accuracy)
        {
            eval += $", eval accuracy {r.InitialEvalAccuracy?.ToString("P2", inv) ?? "-"} → {accuracy.ToString("P2", inv)}";
        }
        context.Info($"trained {r.Steps} steps in {r.Elapsed.TotalSeconds.ToString("F1", inv)} s: loss {first} → {r.FinalLoss.ToString("F4", inv)}{eval}; " +
            $"{r.TrainableParameters:N0} of {r.TotalParameters:N0} parameters trainable ({(100.0 * r.TrainableParameters / Math.Max(1, r.TotalParameters)).ToString("F2", inv)}%)");
        context.Info($"adapter: {r.AdapterDirectory}");
    }
}

/// <summary>Training options shared by <c>train</c> and <c>run</c>.</summary>
internal sealed class TrainOptionSet
{
    public Option<int> Rank { get; } = new Option<int>("--rank") { Description = "LoRA rank r.", DefaultValueFactory = _ => 8 }.AtLeast(1);

    public Option<double> Alpha { get; } = new Option<double>("--alpha") { Description = "LoRA alpha (scaling alpha/r, or alpha/sqrt(r) with --rslora).", DefaultValueFactory = _ => 16 }.Finite(0);

    public Option<TargetModules?> Targets { get; } = new("--targets")
    {
        Description = TargetsArgument.Help,
        Arity = ArgumentArity.OneOrMore,
        AllowMultipleArgumentsPerToken = true,
        CustomParser = result =>
        {
            if (TargetsArgument.TryParse([.. result.Tokens.Select(t => t.Value)], out var targets, out string? error))
            {
                return targets;
            }
            result.AddError(error);
            return null;
        },
    };

    public Option<bool> RsLora { get; } = new("--rslora") { Description = "Scale by alpha/sqrt(r) (rsLoRA)." };

    public Option<bool> Dora { get; } = new("--dora") { Description = "Weight-decomposed LoRA (DoRA)." };

    public Option<double> Dropout { get; } = new Option<double>("--dropout") { Description = "LoRA dropout probability." }.Finite(0, 0.999);

    public Option<int> Epochs { get; } = new Option<int>("--epochs") { Description = "Passes over the training data (ignored with --steps).", DefaultValueFactory = _ => 1 }.AtLeast(1);

    public Option<int?> Steps { get; } = new("--steps") { Description = "Optimizer steps (overrides --epochs)." };

    public Option<double> Lr { get; } = new Option<double>("--lr") { Description = "Peak learning rate (AdamW, linear warm-up then cosine).", DefaultValueFactory = _ => 2e-3 }.Finite(1e-12);

    public Option<int> Batch { get; } = new Option<int>("--batch") { Description = "Sequences per optimizer step.", DefaultValueFactory = _ => 8 }.AtLeast(1);

    public Option<int> Seed { get; } = new("--seed") { Description = "Seed (same seed, same machine → same adapter bytes).", DefaultValueFactory = _ => 42 };

    public Option<int?> Threads { get; } = new("--threads") { Description = "Torch intra-op threads (default: TorchSharp's choice; 1 is often faster on small shared machines)." };

    public Option<bool> GradientCheckpointing { get; } = new("--gradient-checkpointing") { Description = "Recompute each layer's forward in backward instead of keeping its activations (less memory, about one more forward per step; same losses and gradients)." };

    public Option<int?> GradientCheckpointingLayers { get; } = new("--gradient-checkpointing-layers") { Description = "Checkpoint only the first N layers and keep the others' activations (implies --gradient-checkpointing; less recomputation, more memory; default: all layers)." };

    public ChoiceOption<OnnxLora.Models.GradientCheckpointingGranularity> GradientCheckpointingGranularity { get; } = new("--gradient-checkpointing-granularity",
        "What a checkpointed layer recomputes: full (the whole layer, least memory) or selective (only the feed-forward block up to its activation: about half the memory saving for less recomputation); implies --gradient-checkpointing.",
        OnnxLora.Models.GradientCheckpointingGranularity.Full, ("full", OnnxLora.Models.GradientCheckpointingGranularity.Full), ("selective", OnnxLora.Models.GradientCheckpointingGranularity.Selective));

    public ChoiceOption<DType> BaseDType { get; } = new("--base-dtype", "Storage of the frozen base weights: fp32, or bf16 (QLoRA-style: frozen Linear/Embedding weights in bf16 computing in bf16; LoRA factors, optimizer state and the saved adapter stay fp32; not with --dora).",
        DType.F32, ("fp32", DType.F32), ("bf16", DType.BF16));

    public ChoiceOption<string> Device { get; } = new("--device", "Training device (cpu; TorchSharp's CUDA natives are not available here).", "cpu", ("cpu", "cpu"));

    public TrainOptionSet()
    {
        Threads.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<int?>() is < 1)
            {
                r.AddError("--threads must be at least 1.");
            }
        });
        GradientCheckpointingLayers.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<int?>() is < 1)
            {
                r.AddError("--gradient-checkpointing-layers must be at least 1.");
            }
        });
        Steps.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<int?>() is < 1)
            {
                r.AddError("--steps must be at least 1.");
            }
        });
    }

    public void AddTo(Command command)
    {
        foreach (Option o in new Option[] { Rank, Alpha, Targets, RsLora, Dora, Dropout, Epochs, Steps, Lr, Batch, Seed, Threads, GradientCheckpointing, GradientCheckpointingLayers, GradientCheckpointingGranularity, BaseDType, Device })
        {
            command.Options.Add(o);
        }
    }

    public TrainerOptions Read(ParseResult parse) => new()
    {
        Lora = new PeftAdapterConfig
        {
            R = parse.GetValue(Rank),
            Alpha = parse.GetValue(Alpha),
            TargetModules = parse.GetValue(Targets),
            UseRsLora = parse.GetValue(RsLora),
            UseDora = parse.GetValue(Dora),
            LoraDropout = parse.GetValue(Dropout),
        },
        Epochs = parse.GetValue(Epochs),
        Steps = parse.GetValue(Steps),
        LearningRate = parse.GetValue(Lr),
        BatchSize = parse.GetValue(Batch),
        Seed = parse.GetValue(Seed),
        Threads = parse.GetValue(Threads),
        GradientCheckpointing = parse.GetValue(GradientCheckpointing) || parse.GetValue(GradientCheckpointingLayers) is not null || parse.GetResult(GradientCheckpointingGranularity) is not null,
        GradientCheckpointingLayers = parse.GetValue(GradientCheckpointingLayers),
        GradientCheckpointingGranularity = GradientCheckpointingGranularity.Read(parse),
        BaseDType = BaseDType.Read(parse),
        Device = Device.Read(parse),
    };

}
