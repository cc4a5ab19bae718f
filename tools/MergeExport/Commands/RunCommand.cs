using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using OnnxLora.Core;
using OnnxLora.Core.HuggingFace;
using OnnxLora.Core.IO;
using OnnxLora.Core.Peft;
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
using TorchSharp;

namespace OnnxLora.MergeExport.Commands;

/// <summary>
/// <c>run</c>: the whole pipeline. Without --model it uses the embedded sample; without --adapter it
/// first trains a short adapter on the sample's task data. Then it merges the adapter into the
/// checkpoint (streamed), exports that merged checkpoint as merged.onnx and the base checkpoint as base.onnx
/// and (with the adapter attached) unmerged.onnx and the adapter-ready adapters.onnx with the adapter's .onnx_adapter,
/// validates merged.onnx against unmerged, base + active adapter, base and the TorchSharp model with the adapter, and
/// writes the reports. For a decoder it also writes the GenAI folder of the merged checkpoint (genai-merged/, with the
/// key/value cache) and with-past base and unmerged graphs, validates the folder's model.onnx against them with decode
/// latency (report-generation/), and prints a continuation generated from the folder. Each checkpoint is loaded once.
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
        // With a GenAI folder, the references of the graph that ships there: base and unmerged with the same key/value cache.
        bool generation = outputs.ContainsKey("genaiMerged");
        Exported("base", ExportCommand.ExportLoaded(eager.Module, model, null, Path.Combine(outDir, "base.onnx"), exportOptions with { Mode = OnnxExportMode.Base }));
        if (generation)
        {
            Exported("baseWithPast", ExportCommand.ExportLoaded(eager.Module, model, null, Path.Combine(outDir, "base-with-past.onnx"), exportOptions with { Mode = OnnxExportMode.Base, UsePast = true }));
        }
        ct.ThrowIfCancellationRequested();
        PeftModelAdapter.Attach(eager.Module, adapter);
        Exported("unmerged", ExportCommand.ExportLoaded(eager.Module, model, adapter, Path.Combine(outDir, "unmerged.onnx"), exportOptions with { Mode = OnnxExportMode.Unmerged }));
        if (generation)
        {
            Exported("unmergedWithPast", ExportCommand.ExportLoaded(eager.Module, model, adapter, Path.Combine(outDir, "unmerged-with-past.onnx"), exportOptions with { Mode = OnnxExportMode.Unmerged, UsePast = true }));
        }
        ct.ThrowIfCancellationRequested();
        string? adapterFile = ExportAdaptersGraph(eager.Module, adapter, Path.Combine(outDir, "adapters.onnx"), exportOptions, outputs);
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

        Context.Info($"[5/5] validating merged vs unmerged, {(adapterFile is null ? "" : "base + active adapter, ")}base and the TorchSharp model in ONNX Runtime"
            + (generation ? ", then the generation model with its key/value cache" : ""));
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
            AdapterModelPath = adapterFile is null ? null : outputs["adapters"],
            ActiveAdapterPath = adapterFile,
        }, options with { DecodeTokens = 0 }, ct);
        var paths = ReportWriter.WriteAll(report, Path.Combine(outDir, "report"), Context.Force);
        (ValidationReport, ReportPaths)? shipped = null;
        if (generation)
        {
            // The file that ships is the GenAI folder's with-past graph: validated against the with-past unmerged and
            // base graphs (prefill with an empty past, then greedy decoding through the cache with decode latency).
            string genaiModel = Path.Combine(outputs["genaiMerged"], GenAiExporter.ModelFileName);
            // Input files, task data and the baseline belong to the first validation (input files cannot hold the cache).
            var decodeOptions = options with
            {
                DecodeTokens = options.DecodeTokens > 0 ? options.DecodeTokens : DefaultDecodeTokens,
                InputFiles = [],
                DataFile = null,
                MaxMetricDelta = null,
                BaselineReport = null,
                MaxRegression = null,
            };
            Context.Info($"      validating the generation model {genaiModel} against unmerged-with-past.onnx and base-with-past.onnx, decoding {decodeOptions.DecodeTokens} tokens");
            var genaiReport = Validator.Run(new ValidationRequest(genaiModel, outputs["unmergedWithPast"]) { BasePath = outputs["baseWithPast"] }, decodeOptions, ct);
            shipped = (genaiReport, ReportWriter.WriteAll(genaiReport, Path.Combine(outDir, "report-generation"), Context.Force));
        }
        int code = ValidationOutput.Print(Context, "run", report, paths, outputs, shipped);
        PrintLatencies(report);
        if (outputs.TryGetValue("genaiMerged", out string? genaiFolder) && !Context.Json)
        {
            ShowContinuation(genaiFolder, Path.Combine(model, SampleGenerator.TaskFileName));
        }
        Context.Info($"done in {clock.Elapsed.TotalSeconds.ToString("F1", inv)} s; HTML report: {paths.Html}");
        return code;
    }

    /// <summary>Tokens the generation model decodes in validation when --decode-tokens is not given.</summary>
    private const int DefaultDecodeTokens = 16;

    /// <summary>
    /// The adapter-ready graph (LoRA factors as inputs, <see cref="OnnxExportMode.Adapters"/>) and the adapter's
    /// <c>.onnx_adapter</c> beside it, for ONNX Runtime's LoRA adapters; validated as base + active adapter against the merged
    /// model. An adapter that cannot be written as A/B inputs (DoRA, LoHa, LoKr, lora_bias, modules_to_save — e.g. the BERT
    /// sample's classifier head) skips this step with the reason printed. Returns the adapter file, or null when skipped.
    /// </summary>
    private string? ExportAdaptersGraph(torch.nn.Module module, string adapterDir, string path, ExportOptions exportOptions, Dictionary<string, string> outputs)
    {
        using var peft = PeftAdapter.Load(adapterDir);
        ExportResult result;
        try
        {
            using var outputLock = OutputLock.Acquire(path);
            result = OnnxExporter.ExportWithAdapters(module, [peft], path, exportOptions with { Mode = OnnxExportMode.Adapters });
        }
        catch (OnnxLoraException e) when (e.Kind == ErrorKind.BadInput)
        {
            // With --json, on stderr as "warning: skipping the ONNX Runtime adapters graph: <reason>", which the MSBuild step reads (ToolResult).
            string skipped = $"skipping the ONNX Runtime adapters graph: {e.Message}";
            if (Context.Json)
            {
                Context.Warn([skipped]);
            }
            else
            {
                Context.Info("      " + skipped);
            }
            return null;
        }
        outputs["adapters"] = result.ModelPath;
        outputs["onnxAdapter"] = result.AdapterFiles[0];
        Context.Info($"      {result.ModelPath} ({result.NodeCount} nodes; LoRA factors as inputs) and {result.AdapterFiles[0]} ({new FileInfo(result.AdapterFiles[0]).Length:N0} bytes)");
        return result.AdapterFiles[0];
    }

    /// <summary>The median latency of each model (base / merged / unmerged / base + active adapter), on one line.</summary>
    private void PrintLatencies(ValidationReport report)
    {
        if (Context.Json || report.Latency is not { } latency)
        {
            return;
        }
        Context.Info("latency, median ms: " + string.Join(", ", latency.Models.Select(m =>
            $"{(m.Role == ModelRole.Adapter ? "base + active adapter" : m.Role.ToString().ToLowerInvariant())} {m.Stats.P50Ms.ToString("F3", CultureInfo.InvariantCulture)}")));
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
