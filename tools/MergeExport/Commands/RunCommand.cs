using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using OnnxLora.Core;
using OnnxLora.Core.HuggingFace;
using OnnxLora.Core.IO;
using OnnxLora.Export;
using OnnxLora.Generate;
using OnnxLora.Merge;
using OnnxLora.MergeExport.Internals;
using OnnxLora.Models.Bert;
using OnnxLora.Models.Onnx;
using OnnxLora.Models.Peft;
using OnnxLora.Training;
using OnnxLora.Training.Data;
using OnnxLora.Training.Sample;
using OnnxLora.Validate;

namespace OnnxLora.MergeExport.Commands;

/// <summary>
/// <c>run</c>: the whole pipeline. Without --model it uses the embedded sample; without --adapter it
/// first trains a short adapter on the sample's task data. Then it merges the adapter into the
/// checkpoint (streamed), exports that merged checkpoint as merged.onnx and the base checkpoint as base.onnx
/// and (with the adapter attached) unmerged.onnx, validates merged.onnx against unmerged, base and the
/// TorchSharp model with the adapter, and writes the reports. Each checkpoint is loaded once.
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
            var mergeOptions = MergeOptions.Default with { Overwrite = Context.Force };
            Context.Warn(CheckpointMerger.Plan(model, adapters, mergeOptions).Warnings);
            var merged = CheckpointMerger.Merge(model, adapters, mergedCheckpoint, mergeOptions);
            Context.Info($"      {merged.TensorsMerged} tensors merged, {merged.TensorsCopied} copied");
        }
        finally
        {
            AdapterArgument.DisposeAll(adapters);
        }
        outputs["mergedCheckpoint"] = mergedCheckpoint;
        ct.ThrowIfCancellationRequested();

        // The merged model that ships is the merged checkpoint written above: it is exported as it is (plain
        // weights) and that file is validated. The base checkpoint is loaded once: exported as the base
        // graph, then given the adapter for the unmerged graph and as the eager reference of step 5.
        Context.Info($"[4/5] exporting merged.onnx from {mergedCheckpoint}, base.onnx and unmerged.onnx from {model}");
        var exportOptions = ExportOptions.Default with { Overwrite = Context.Force };
        // Streamed from the merged checkpoint (nothing of it is loaded in memory).
        Exported("merged", ExportCommand.ExportPretrained(mergedCheckpoint, adapter, Path.Combine(outDir, "merged.onnx"), exportOptions with { Mode = OnnxExportMode.Base }));
        if (HfConfig.Load(mergedCheckpoint) is LlamaConfig && CheckpointTokenizer.Exists(mergedCheckpoint))
        {
            // The deployable generation model: the merged checkpoint with its key/value cache, as a GenAI folder.
            var genai = GenAiExporter.ExportPretrained(mergedCheckpoint, [], Path.Combine(outDir, "genai-merged"), exportOptions with { Mode = OnnxExportMode.Base });
            outputs["genaiMerged"] = genai.Directory;
            Context.Info($"      {genai.Directory}{Path.DirectorySeparatorChar} (ONNX Runtime GenAI folder: {string.Join(", ", genai.Files)})");
        }
        ct.ThrowIfCancellationRequested();
        using var eager = LoadedModel.Load(model, null);
        Exported("base", ExportCommand.ExportLoaded(eager.Module, model, null, Path.Combine(outDir, "base.onnx"), exportOptions with { Mode = OnnxExportMode.Base }));
        ct.ThrowIfCancellationRequested();
        PeftModelAdapter.Attach(eager.Module, adapter);
        Exported("unmerged", ExportCommand.ExportLoaded(eager.Module, model, adapter, Path.Combine(outDir, "unmerged.onnx"), exportOptions with { Mode = OnnxExportMode.Unmerged }));
        ct.ThrowIfCancellationRequested();

        void Exported(string name, ExportResult result)
        {
            outputs[name] = result.ModelPath;
            Context.Info($"      {result.ModelPath} ({result.NodeCount} nodes, {new FileInfo(result.ModelPath).Length:N0} bytes)");
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
        string taskData = Path.Combine(model, SampleGenerator.TaskFileName);
        if (options.DataFile is null && eager.Module is BertForSequenceClassification && File.Exists(taskData))
        {
            // A classifier's own task data (pre-tokenized, labelled) gives the accuracy table merged / unmerged / base.
            options = options with { DataFile = taskData };
        }
        var report = Validator.Run(new ValidationRequest(outputs["merged"], outputs["unmerged"])
        {
            BasePath = outputs["base"],
            EagerReference = EagerModel.Reference(eager.Module),
        }, options, ct);
        var paths = ReportWriter.WriteAll(report, Path.Combine(outDir, "report"), Context.Force);
        int code = ValidationOutput.Print(Context, "run", report, paths, outputs);
        if (outputs.TryGetValue("genaiMerged", out string? genaiFolder) && !Context.Json)
        {
            ShowContinuation(genaiFolder, Path.Combine(model, SampleGenerator.TaskFileName));
        }
        Context.Info($"done in {clock.Elapsed.TotalSeconds.ToString("F1", inv)} s; HTML report: {paths.Html}");
        return code;
    }

    /// <summary>Prints a short greedy continuation from the GenAI folder, of the first task line's input (up to "=>") or a fixed prompt.</summary>
    private void ShowContinuation(string genaiFolder, string taskFile)
    {
        string prompt = "The cat";
        if (File.Exists(taskFile) && File.ReadLines(taskFile).FirstOrDefault() is { } line
            && System.Text.Json.JsonDocument.Parse(line).RootElement.TryGetProperty("text", out var text) && text.GetString() is { } sentence)
        {
            int arrow = sentence.IndexOf("=>", StringComparison.Ordinal);
            prompt = arrow > 0 ? sentence[..(arrow + 2)] : sentence;
        }
        using var generator = GenerateCommand.OpenGenAi(genaiFolder);
        var result = generator.Generate(generator.Encode(prompt), new GenerationOptions { MaxNewTokens = 16 });
        Context.Info($"generated by ONNX Runtime GenAI from {genaiFolder}: \"{prompt}\" →{result.Text}");
    }
}
