using System.CommandLine;
using OnnxLora.Core;
using OnnxLora.Core.HuggingFace;
using OnnxLora.Core.Onnx;
using OnnxLora.Core.Peft;
using OnnxLora.Export;
using OnnxLora.Merge;
using OnnxLora.MergeExport.Internals;
using OnnxLora.Models.Llama;
using OnnxLora.Models.Onnx;

using static TorchSharp.torch;

namespace OnnxLora.MergeExport.Commands;

/// <summary><c>export</c>: a checkpoint (and adapters) to ONNX, as the base model, merged, or with the LoRA branches as nodes.</summary>
internal sealed class ExportCommand : CliCommand
{
    private readonly Option<string> _model = new("--model") { Description = "Hugging Face checkpoint folder.", Required = true };
    private readonly Option<string[]> _adapters = new("--adapter") { Description = "PEFT adapter folder (DIR or DIR=WEIGHT; several only with --mode merged)." };
    private readonly ChoiceOption<OnnxExportMode> _mode = new("--mode",
        "base, merged (adapter folded into the weights), unmerged (LoRA branches as separate nodes) or adapters (LoRA factors as graph inputs "
        + "for ONNX Runtime's adapters; writes one <adapter>.onnx_adapter per --adapter beside the model).", OnnxExportMode.Merged,
        ("base", OnnxExportMode.Base), ("merged", OnnxExportMode.Merged), ("unmerged", OnnxExportMode.Unmerged), ("adapters", OnnxExportMode.Adapters));
    private readonly Option<int> _opset = new Option<int>("--opset") { Description = "ONNX opset, 17..21.", DefaultValueFactory = _ => 17 };
    private readonly ChoiceOption<DType> _dtype = new("--dtype", "Weight and compute type: fp32 or fp16.", DType.F32,
        ("fp32", DType.F32), ("fp16", DType.F16));
    private readonly ChoiceOption<OnnxExternalData> _external = new("--external-data", "Weights in a .data file beside the model: auto (above 2 GB), always or never.", OnnxExternalData.Auto,
        ("auto", OnnxExternalData.Auto), ("always", OnnxExternalData.Always), ("never", OnnxExternalData.Never));
    private readonly Option<string> _out = new("--out") { Description = "The .onnx file to write (or give --genai)." };
    private readonly Option<string> _genai = new("--genai")
    {
        Description = "Write an ONNX Runtime GenAI model folder instead of --out: model.onnx with the key/value cache, genai_config.json, and tokenizer.json / tokenizer_config.json from --model (decoders: llama, mistral, qwen2).",
    };
    private readonly Option<bool> _withPast = new("--with-past")
    {
        Description = "Export with the key/value cache, Optimum's text-generation-with-past: past_key_values.{i}.key/.value inputs, present.{i}.key/.value outputs, position_ids (decoders).",
    };

    public ExportCommand(CliContext context)
        : base("export", "Export a TorchSharp model to ONNX: base, merged, or unmerged (LoRA as separate nodes).", context)
    {
        foreach (Option o in new Option[] { _model, _adapters, _mode, _opset, _dtype, _external, _out, _genai, _withPast })
        {
            Options.Add(o);
        }
        Validators.Add(r =>
        {
            if ((r.GetValue(_out) is null) == (r.GetValue(_genai) is null))
            {
                r.AddError("give exactly one of --out (an .onnx file) and --genai (a GenAI model folder).");
            }
        });
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
        var mode = _mode.Read(parse);
        var options = ExportOptions.Default with
        {
            Mode = mode,
            Opset = parse.GetValue(_opset),
            WeightType = _dtype.Read(parse),
            ExternalData = _external.Read(parse),
            UsePast = parse.GetValue(_withPast),
            Overwrite = Context.Force,
        };
        string? genai = parse.GetValue(_genai);
        var result = Run(parse.GetValue(_model)!, adapters, genai ?? parse.GetValue(_out)!, options, Context, genAiFolder: genai is not null);
        if (Context.Json)
        {
            var outputs = new Dictionary<string, string> { ["model"] = result.ModelPath };
            foreach (string file in result.AdapterFiles)
            {
                Context.Info($"wrote ONNX Runtime adapter {file}");
            }
            if (genai is not null)
            {
                outputs["genai"] = Path.GetFullPath(genai);
            }
            if (result.ExternalDataPath is { } data)
            {
                outputs["externalData"] = data;
            }
            for (int i = 0; i < result.AdapterFiles.Count; i++)
            {
                outputs[$"onnxAdapter{i}"] = result.AdapterFiles[i];
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
            if (genai is not null)
            {
                Context.Info($"ONNX Runtime GenAI folder: {Path.GetFullPath(genai)} (try: merge-export generate --genai {genai} --prompt \"...\")");
            }
        }
        return Cli.Success;
    }

    /// <summary>
    /// Exports one model to the .onnx file <paramref name="output"/>, or with <paramref name="genAiFolder"/> to the GenAI
    /// model folder <paramref name="output"/> (tokenizer files from <paramref name="modelDir"/>); shared with <c>run</c>.
    /// </summary>
    internal static ExportResult Run(string modelDir, IReadOnlyList<string> adapterArgs, string output, ExportOptions options, CliContext? context = null, bool genAiFolder = false)
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
        var baseFiles = CheckpointFilesOf(modelFull);
        using var outputLock = Core.IO.OutputLock.Acquire(output);
        if (adapterArgs.Count == 1 && options.Mode != OnnxExportMode.Adapters && AdapterArgument.Parse(adapterArgs[0]).Weight != 1.0)
        {
            throw OnnxLoraException.InvalidOption("--adapter", $"{adapterArgs[0]}: a weight needs several adapters or merge-export merge; export takes one adapter at weight 1.");
        }
        if (genAiFolder && HfConfig.Load(modelFull) is { } config and not LlamaConfig)
        {
            throw OnnxLoraException.InvalidOption("--genai", $"a {config.ModelType} checkpoint", "a decoder checkpoint (model_type llama, mistral or qwen2)");
        }
        // The weights stream from the checkpoint (and the adapters' files) into the ONNX file, merged on the way; several adapters fold into one set of weights.
        var streamed = AdapterArgument.LoadAll(adapterArgs);
        try
        {
            var fingerprinted = options with
            {
                BaseModelFiles = baseFiles,
                AdapterName = streamed.Count == 0 ? null : string.Join("+", streamed.Select(a => Path.GetFileName(Path.GetFullPath(a.Adapter.Directory).TrimEnd('/')))),
                AdapterFiles = streamed.SelectMany(a => AdapterFilesOf(a.Adapter.Directory)).ToList(),
            };
            var result = genAiFolder
                ? GenAiExporter.ExportPretrained(modelFull, streamed, output, fingerprinted, MergeOptions.Default).Model
                : OnnxExporter.ExportPretrained(modelFull, streamed, output, fingerprinted, MergeOptions.Default);
            context?.Warn(result.Warnings);
            return result;
        }
        finally
        {
            AdapterArgument.DisposeAll(streamed);
        }
    }

    /// <summary>The model as a LLaMA-family decoder, or a bad-input error naming <paramref name="option"/> and the model type.</summary>
    internal static LlamaForCausalLM Decoder(nn.Module module, string option) => module as LlamaForCausalLM
        ?? throw OnnxLoraException.InvalidOption(option, $"a {module.GetType().Name}", "a decoder checkpoint (model_type llama, mistral or qwen2)");

    /// <summary>
    /// Exports an already loaded model, fingerprinting <paramref name="modelDir"/>'s files as the base and
    /// <paramref name="adapterDir"/>'s as the adapter (when given); shared with <c>run</c>, which loads each model once.
    /// </summary>
    internal static ExportResult ExportLoaded(nn.Module module, string modelDir, string? adapterDir, string output, ExportOptions options)
    {
        using var outputLock = Core.IO.OutputLock.Acquire(output);
        return OnnxExporter.Export(module, output, Fingerprinted(options, modelDir, adapterDir));
    }

    /// <summary>
    /// Exports the checkpoint <paramref name="modelDir"/> without adapters, streamed (<see cref="OnnxExporter.ExportPretrained"/>),
    /// fingerprinted as <see cref="ExportLoaded"/> does; <c>run</c> exports its merged checkpoint this way.
    /// </summary>
    internal static ExportResult ExportPretrained(string modelDir, string? adapterDir, string output, ExportOptions options)
    {
        using var outputLock = Core.IO.OutputLock.Acquire(output);
        return OnnxExporter.ExportPretrained(modelDir, [], output, Fingerprinted(options, modelDir, adapterDir));
    }

    private static ExportOptions Fingerprinted(ExportOptions options, string modelDir, string? adapterDir) => options with
    {
        BaseModelFiles = CheckpointFilesOf(Path.GetFullPath(modelDir)),
        AdapterName = adapterDir is null ? null : Path.GetFileName(Path.GetFullPath(adapterDir).TrimEnd('/')),
        AdapterFiles = adapterDir is null ? [] : AdapterFilesOf(adapterDir),
    };

    private static List<string> CheckpointFilesOf(string modelFull) => Directory.Exists(modelFull)
        ? Directory.GetFiles(modelFull).Where(f => f.EndsWith(".safetensors", StringComparison.Ordinal) || f.EndsWith(".json", StringComparison.Ordinal)).Order(StringComparer.Ordinal).ToList()
        : [];

    private static List<string> AdapterFilesOf(string dir) =>
        [Path.Combine(dir, PeftAdapterConfig.FileName), Path.Combine(dir, PeftAdapter.WeightsFileName)];
}
