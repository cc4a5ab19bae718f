using System.CommandLine;
using OnnxLora.Core;
using OnnxLora.Merge;
using OnnxLora.MergeExport.Internals;

namespace OnnxLora.MergeExport.Commands;

/// <summary>
/// <c>merge</c>: folds adapters into a safetensors checkpoint (streamed), or, without --model, combines
/// several adapters into one new PEFT adapter folder.
/// </summary>
internal sealed class MergeCommand : CliCommand
{
    private readonly Option<string?> _model = new("--model") { Description = "Checkpoint folder (safetensors, single or sharded). Omit it to combine adapters into a new adapter." };
    private readonly Option<string[]> _adapters = new("--adapter") { Description = "Adapter folder, optionally weighted: DIR or DIR=WEIGHT. Repeat for several.", Required = true, AllowMultipleArgumentsPerToken = false };
    private readonly ChoiceOption<Combination> _combine = new("--combine",
        "How several adapters combine: delta_sum (exact Σ w·ΔW) or a PEFT add_weighted_adapter combination_type with PEFT's semantics (see the README's table).",
        Combination.DeltaSum, [.. Enum.GetValues<Combination>().Select(c => (c.ToName(), c))]);
    private readonly Option<double> _density = new Option<double>("--density") { Description = "Share of values kept by ties / dare / magnitude_prune (0..1].", DefaultValueFactory = _ => 1.0 }.Finite(1e-9, 1);
    private readonly ChoiceOption<MajoritySignMethod> _majoritySign = new("--majority-sign-method",
        "Sign election of ties / dare_ties (PEFT's majority_sign_method): total or frequency.", MajoritySignMethod.Total,
        [.. Enum.GetValues<MajoritySignMethod>().Select(m => (m.ToName(), m))]);
    private readonly Option<int?> _rank = new("--rank") { Description = "New rank (PEFT's svd_rank) for --combine svd and *_svd (default: the largest adapter rank)." };
    private readonly Option<int> _seed = new("--seed") { Description = "Seed of dare's random drops." };
    private readonly ChoiceOption<DType?> _dtype = new("--dtype", "Output weight dtype: keep, fp32, fp16 or bf16.", null,
        ("keep", null), ("fp32", DType.F32), ("fp16", DType.F16), ("bf16", DType.BF16));
    private readonly Option<string?> _baseCheckpoint = new("--base-checkpoint") { Description = "ONNX targets: the base checkpoint, to match anonymous weights by content." };
    private readonly Option<bool> _safe = new("--safe") { Description = "Refuse to write if a merged tensor has NaN/Inf (on by default; --safe false turns it off).", DefaultValueFactory = _ => true };
    private readonly Option<string> _out = new("--out") { Description = "Output: a checkpoint folder, an .onnx file, or (without --model) an adapter folder.", Required = true };

    public MergeCommand(CliContext context)
        : base("merge", "Merge adapters into a checkpoint (streamed, exact in fp32), or combine adapters into a new adapter.", context)
    {
        foreach (Option o in new Option[] { _model, _adapters, _combine, _density, _majoritySign, _rank, _seed, _dtype, _baseCheckpoint, _safe, _out })
        {
            Options.Add(o);
        }
        _rank.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<int?>() is < 1)
            {
                r.AddError("--rank must be at least 1.");
            }
        });
    }

    protected override int Execute(ParseResult parse)
    {
        var options = new MergeOptions
        {
            Combination = _combine.Read(parse),
            Density = parse.GetValue(_density),
            MajoritySignMethod = _majoritySign.Read(parse),
            SvdRank = parse.GetValue(_rank),
            Seed = parse.GetValue(_seed),
            OutputDType = _dtype.Read(parse),
            SafeMode = parse.GetValue(_safe),
            Overwrite = Context.Force,
        };
        string? model = parse.GetValue(_model);
        string output = Path.GetFullPath(parse.GetValue(_out)!);
        var adapters = AdapterArgument.LoadAll(parse.GetValue(_adapters)!);
        try
        {
            if (model is null)
            {
                var combined = AdapterCombiner.Combine(adapters, output, options);
                Context.Warn(combined.Warnings);
                Report("adapter", output, $"combined {adapters.Count} adapters ({combined.Applied.ToName()}) into a rank-{combined.Config.R} adapter");
                return Cli.Success;
            }
            if (File.Exists(model) && model.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase))
            {
                return OnnxTarget.Merge(Context, model, adapters, output, options, parse.GetValue(_baseCheckpoint));
            }
            using var outputLock = Core.IO.OutputLock.Acquire(output);
            var plan = CheckpointMerger.Plan(model, adapters, options);
            Context.Warn(plan.Warnings);
            if (Context.Verbose)
            {
                Context.Out.WriteLine(plan.Describe());
            }
            var result = CheckpointMerger.Merge(model, adapters, output, options);
            Report("checkpoint", result.OutputDirectory,
                $"merged {result.TensorsMerged} tensors ({result.TensorsReplaced} replaced, {result.TensorsCopied} copied, {result.BytesWritten:N0} bytes)");
            return Cli.Success;
        }
        finally
        {
            AdapterArgument.DisposeAll(adapters);
        }
    }

    private void Report(string kind, string path, string summary)
    {
        if (Context.Json)
        {
            Context.Out.WriteLine(new CommandResult("merge", "passed") { Outputs = { [kind] = path } }.ToJson());
        }
        else
        {
            Context.Info($"{summary}: {path}");
        }
    }
}
