using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using OnnxLora.Core;
using OnnxLora.Core.IO;
using OnnxLora.Export;
using OnnxLora.Merge;
using OnnxLora.MergeExport.Internals;
using OnnxLora.Training;
using OnnxLora.Training.Onnx;
using OnnxLora.Training.Sample;
using OnnxLora.Validate;

namespace OnnxLora.MergeExport.Commands;

/// <summary>
/// <c>run</c>: the whole pipeline. Without --model it uses the embedded sample; without --adapter it
/// first trains a short adapter on the sample's task data. Then it merges the adapter into the
/// checkpoint (streamed), exports base, merged and unmerged ONNX models, validates merged against
/// unmerged, base and the TorchSharp model, and writes the reports.
/// </summary>
internal sealed class RunCommand : CliCommand
{
    private readonly Option<string?> _model = new("--model") { Description = "Checkpoint folder (default: the embedded sample)." };
    private readonly Option<string?> _adapter = new("--adapter") { Description = "PEFT adapter folder (default: train one on the sample's task data)." };
    private readonly Option<string> _out = new("--out") { Description = "Output folder.", DefaultValueFactory = _ => "onnxlora-run" };
    private readonly Option<int> _trainSteps = new Option<int>("--train-steps") { Description = "Steps of the adapter trained when none is given.", DefaultValueFactory = _ => 60 }.AtLeast(1);
    private readonly Option<bool> _noValidate = new("--no-validate") { Description = "Merge and export only." };
    private readonly ValidationOptionSet _validation = new();

    public RunCommand(CliContext context)
        : base("run", "The whole pipeline on a model and adapter (default: the embedded sample): train if needed, merge, export, validate, report.", context)
    {
        foreach (Option o in new Option[] { _model, _adapter, _out, _trainSteps, _noValidate })
        {
            Options.Add(o);
        }
        _validation.AddTo(this);
    }

    protected override int Execute(ParseResult parse)
    {
        var clock = Stopwatch.StartNew();
        var inv = CultureInfo.InvariantCulture;
        string outDir = Path.GetFullPath(parse.GetValue(_out)!);
        if (Directory.Exists(outDir) && Directory.EnumerateFileSystemEntries(outDir).Any() && !Context.Force)
        {
            throw OnnxLoraException.Invalid(outDir, "output folder exists and is not empty; pass --force to replace its outputs or choose another --out.");
        }
        Directory.CreateDirectory(outDir);
        using var outputLock = OutputLock.Acquire(outDir);
        var ct = Context.CancellationToken;
        var outputs = new Dictionary<string, string>();

        string? model = parse.GetValue(_model);
        if (model is null)
        {
            model = Path.Combine(outDir, "sample");
            Context.Info($"[1/5] writing the embedded sample model to {model}");
            SampleGenerator.WriteEmbedded(model, Context.Force);
            outputs["sample"] = model;
        }
        string? adapter = parse.GetValue(_adapter);
        if (adapter is null)
        {
            string data = Path.Combine(model, SampleGenerator.TaskFileName);
            if (!File.Exists(data))
            {
                throw OnnxLoraException.InvalidOption("--adapter", $"required with --model {model}: there is no {SampleGenerator.TaskFileName} there to train one on.");
            }
            adapter = Path.Combine(outDir, "adapter");
            Context.Info($"[2/5] training a LoRA adapter ({parse.GetValue(_trainSteps)} steps) on {data}");
            var trained = Trainer.Train(model, data, adapter, new TrainerOptions
            {
                Steps = parse.GetValue(_trainSteps),
                LearningRate = 2e-3,
                WarmupSteps = 5,
                Threads = 1,
                Overwrite = Context.Force,
            }, ProgressPrinter.For(Context), ct);
            TrainCommand.Print(Context, trained, asStep: true);
            outputs["adapter"] = adapter;
        }
        ct.ThrowIfCancellationRequested();

        string mergedCheckpoint = Path.Combine(outDir, "merged-checkpoint");
        Context.Info($"[3/5] merging {adapter} into {model} (streamed) → {mergedCheckpoint}");
        var adapters = AdapterArgument.LoadAll([adapter]);
        try
        {
            var merged = CheckpointMerger.Merge(model, adapters, mergedCheckpoint, MergeOptions.Default with { Overwrite = Context.Force });
            Context.Info($"      {merged.TensorsMerged} tensors merged, {merged.TensorsCopied} copied");
        }
        finally
        {
            AdapterArgument.DisposeAll(adapters);
        }
        outputs["mergedCheckpoint"] = mergedCheckpoint;
        ct.ThrowIfCancellationRequested();

        Context.Info("[4/5] exporting base, merged and unmerged ONNX models");
        var exportOptions = ExportOptions.Default with { Overwrite = Context.Force };
        foreach (var (name, mode) in new[] { ("base", OnnxExportMode.Base), ("merged", OnnxExportMode.Merged), ("unmerged", OnnxExportMode.Unmerged) })
        {
            string path = Path.Combine(outDir, name + ".onnx");
            var result = ExportCommand.Run(model, mode == OnnxExportMode.Base ? [] : [adapter], path, exportOptions with { Mode = mode });
            outputs[name] = result.ModelPath;
            Context.Info($"      {path} ({result.NodeCount} nodes, {new FileInfo(path).Length:N0} bytes)");
            ct.ThrowIfCancellationRequested();
        }

        if (parse.GetValue(_noValidate))
        {
            if (Context.Json)
            {
                Context.Out.WriteLine(new CommandResult("run", "passed") { Outputs = outputs }.ToJson());
            }
            Context.Info($"done in {clock.Elapsed.TotalSeconds.ToString("F1", inv)} s (validation skipped)");
            return Cli.Success;
        }

        Context.Info("[5/5] validating merged vs unmerged, base and the TorchSharp model in ONNX Runtime");
        var options = _validation.Read(parse);
        ValidationReport report;
        using (var eager = LoadedModel.Load(model, adapter))
        {
            report = Validator.Run(new ValidationRequest(outputs["merged"], outputs["unmerged"])
            {
                BasePath = outputs["base"],
                EagerReference = EagerModel.Reference(eager.Module),
            }, options, ct);
        }
        var paths = ReportWriter.WriteAll(report, Path.Combine(outDir, "report"), Context.Force);
        int code = ValidationOutput.Print(Context, "run", report, paths, outputs);
        Context.Info($"done in {clock.Elapsed.TotalSeconds.ToString("F1", inv)} s; HTML report: {paths.Html}");
        return code;
    }
}
