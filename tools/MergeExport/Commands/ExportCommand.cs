using System.CommandLine;
using OnnxLora.Core;
using OnnxLora.Core.Onnx;
using OnnxLora.Core.Peft;
using OnnxLora.Export;
using OnnxLora.Merge;
using OnnxLora.MergeExport.Internals;
using OnnxLora.Training.Onnx;

namespace OnnxLora.MergeExport.Commands;

/// <summary><c>export</c>: a checkpoint (and adapters) to ONNX, as the base model, merged, or with the LoRA branches as nodes.</summary>
internal sealed class ExportCommand : CliCommand
{
    private readonly Option<string> _model = new("--model") { Description = "Hugging Face checkpoint folder.", Required = true };
    private readonly Option<string[]> _adapters = new("--adapter") { Description = "PEFT adapter folder (DIR or DIR=WEIGHT; several only with --mode merged)." };
    private readonly Option<string> _mode = new Option<string>("--mode") { Description = "base, merged (adapter folded into the weights) or unmerged (LoRA branches as separate nodes).", DefaultValueFactory = _ => "merged" }
        .OneOf("base", "merged", "unmerged");
    private readonly Option<int> _opset = new Option<int>("--opset") { Description = "ONNX opset, 17..21.", DefaultValueFactory = _ => 17 };
    private readonly Option<string> _dtype = new Option<string>("--dtype") { Description = "Weight and compute type: fp32 or fp16.", DefaultValueFactory = _ => "fp32" }.OneOf("fp32", "fp16");
    private readonly Option<string> _external = new Option<string>("--external-data") { Description = "Weights in a .data file beside the model: auto (above 2 GB), always or never.", DefaultValueFactory = _ => "auto" }
        .OneOf("auto", "always", "never");
    private readonly Option<string> _out = new("--out") { Description = "The .onnx file to write.", Required = true };

    public ExportCommand(CliContext context)
        : base("export", "Export a TorchSharp model to ONNX: base, merged, or unmerged (LoRA as separate nodes).", context)
    {
        foreach (Option o in new Option[] { _model, _adapters, _mode, _opset, _dtype, _external, _out })
        {
            Options.Add(o);
        }
        _opset.Validators.Add(r =>
        {
            int v = r.GetValueOrDefault<int>();
            if (v is < 17 or > 21)
            {
                r.AddError($"--opset must be between 17 and 21; got {v}.");
            }
        });
    }

    protected override int Execute(ParseResult parse)
    {
        var adapters = parse.GetValue(_adapters) ?? [];
        var mode = parse.GetValue(_mode) switch { "base" => OnnxExportMode.Base, "unmerged" => OnnxExportMode.Unmerged, _ => OnnxExportMode.Merged };
        var options = ExportOptions.Default with
        {
            Mode = mode,
            Opset = parse.GetValue(_opset),
            WeightType = parse.GetValue(_dtype) == "fp16" ? OnnxWeightType.Fp16 : OnnxWeightType.Fp32,
            ExternalData = parse.GetValue(_external) switch { "always" => OnnxExternalData.Always, "never" => OnnxExternalData.Never, _ => OnnxExternalData.Auto },
            Overwrite = Context.Force,
        };
        var result = Run(parse.GetValue(_model)!, adapters, parse.GetValue(_out)!, options);
        if (Context.Json)
        {
            var outputs = new Dictionary<string, string> { ["model"] = result.ModelPath };
            if (result.ExternalDataPath is { } data)
            {
                outputs["externalData"] = data;
            }
            Context.Out.WriteLine(new CommandResult("export", "passed")
            {
                Outputs = outputs,
                Details = { ["nodes"] = result.NodeCount, ["initializers"] = result.InitializerCount, ["loraLayers"] = result.LoraLayerCount },
            }.ToJson());
        }
        else
        {
            Context.Info($"exported {mode.ToString().ToLowerInvariant()} model: {result.ModelPath} ({result.NodeCount} nodes, {result.InitializerCount} initializers, {result.LoraLayerCount} LoRA layers)");
        }
        return Cli.Success;
    }

    /// <summary>Exports one model; shared with <c>run</c>.</summary>
    internal static ExportResult Run(string modelDir, IReadOnlyList<string> adapterArgs, string output, ExportOptions options)
    {
        if (options.Mode != OnnxExportMode.Base && adapterArgs.Count == 0)
        {
            throw OnnxLoraException.InvalidOption("--mode", $"{options.Mode.ToString().ToLowerInvariant()} needs an --adapter.");
        }
        if (options.Mode == OnnxExportMode.Base && adapterArgs.Count > 0)
        {
            throw OnnxLoraException.InvalidOption("--mode", "base exports the model without adapters; drop --adapter or choose merged/unmerged.");
        }
        if (options.Mode == OnnxExportMode.Unmerged && adapterArgs.Count > 1)
        {
            throw OnnxLoraException.InvalidOption("--mode", "unmerged keeps one adapter's LoRA branches as nodes; give exactly one --adapter (combine several with merge-export merge first).");
        }
        string modelFull = Path.GetFullPath(modelDir);
        var baseFiles = Directory.Exists(modelFull)
            ? Directory.GetFiles(modelFull).Where(f => f.EndsWith(".safetensors", StringComparison.Ordinal) || f.EndsWith(".json", StringComparison.Ordinal)).Order(StringComparer.Ordinal).ToList()
            : [];
        using var outputLock = Core.IO.OutputLock.Acquire(output);
        if (adapterArgs.Count <= 1)
        {
            string? adapterDir = adapterArgs.Count == 1 ? AdapterArgument.Parse(adapterArgs[0]).Directory : null;
            double weight = adapterArgs.Count == 1 ? AdapterArgument.Parse(adapterArgs[0]).Weight : 1.0;
            if (weight != 1.0)
            {
                throw OnnxLoraException.InvalidOption("--adapter", $"{adapterArgs[0]}: a weight needs several adapters or merge-export merge; export takes one adapter at weight 1.");
            }
            using var loaded = LoadedModel.Load(modelFull, adapterDir);
            return OnnxExporter.Export(loaded.Module, output, options with
            {
                BaseModelFiles = baseFiles,
                AdapterName = adapterDir is null ? null : Path.GetFileName(Path.GetFullPath(adapterDir).TrimEnd('/')),
                AdapterFiles = adapterDir is null ? [] : AdapterFilesOf(adapterDir),
            });
        }

        // Several weighted adapters: fold them into the plain model's weights, then export it as it is.
        var adapters = AdapterArgument.LoadAll(adapterArgs);
        try
        {
            using var loaded = LoadedModel.Load(modelFull, null);
            ModelMerge.MergeAdapters(loaded.Module, adapters, MergeOptions.Default);
            return OnnxExporter.Export(loaded.Module, output, options with
            {
                Mode = OnnxExportMode.Base,
                BaseModelFiles = baseFiles,
                AdapterName = string.Join("+", adapters.Select(a => Path.GetFileName(a.Adapter.Directory))),
                AdapterFiles = adapters.SelectMany(a => AdapterFilesOf(a.Adapter.Directory)).ToList(),
            });
        }
        finally
        {
            AdapterArgument.DisposeAll(adapters);
        }
    }

    private static List<string> AdapterFilesOf(string dir) =>
        [Path.Combine(dir, PeftAdapterConfig.FileName), Path.Combine(dir, PeftAdapter.WeightsFileName)];
}
