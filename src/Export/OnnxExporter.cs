using System.Globalization;
using System.Security.Cryptography;
using Onnx;
using OnnxLora.Core;
using OnnxLora.Core.Onnx;
using OnnxLora.Core.Peft;
using OnnxLora.Export.Internals;
using OnnxLora.Merge;
using OnnxLora.Models.Lora;
using OnnxLora.Models.Onnx;
using OnnxLora.Models.Peft;
using static TorchSharp.torch;

namespace OnnxLora.Export;

/// <summary>
/// Exports a TorchSharp model (<see cref="IOnnxExportableModel"/>: LlamaForCausalLM, BertModel, or a
/// user's own) to ONNX with Hugging Face-style inputs and outputs (<c>input_ids</c>,
/// <c>attention_mask</c> → <c>logits</c> / <c>last_hidden_state</c>, symbolic dims "batch" and
/// "sequence") and Hugging Face parameter names for the initializers. The same model and options
/// always give the same bytes.
/// </summary>
/// <remarks>
/// Layouts: Linear weights are stored transposed ([in, out]) under their Hugging Face names; in
/// unmerged mode the adapters are stored under their PEFT keys, transposed (see LoraLinear /
/// LoraEmbedding). Metadata (model metadata_props): <c>onnxlora.mode</c>, <c>onnxlora.weight_type</c>,
/// <c>onnxlora.linear_weight_layout</c>, and when known <c>adapter_name</c>, <c>lora_rank</c>,
/// <c>lora_alpha</c>, <c>lora_scaling</c> (comma-separated when layers differ), <c>base_sha256</c>,
/// <c>adapter_sha256</c> ("file=hex" pairs, by file name).
/// </remarks>
public static class OnnxExporter
{
    /// <summary>The producer name written into every exported model.</summary>
    public const string ProducerName = "OnnxLora";

    /// <summary>Exports <paramref name="model"/> to <paramref name="path"/> (and "&lt;path&gt;.data" when the weights go external).</summary>
    /// <exception cref="OnnxLoraException">Bad input: an option is out of range; the model, or one of its modules, has no ONNX
    /// emission (the message names its path and type); or an output exists and <see cref="ExportOptions.Overwrite"/> is false.</exception>
    public static ExportResult Export(nn.Module model, string path, ExportOptions? options = null)
    {
        options ??= ExportOptions.Default;
        var layers = LoraLayers(model);
        return Save(Build(model, options, weights: null, layers), path, options, layers.Count);
    }

    /// <summary>
    /// Exports the Hugging Face checkpoint in <paramref name="modelDirectory"/> without loading its weights: the graph
    /// is emitted from the model's modules built on TorchSharp's meta device (shapes only), and each weight goes
    /// from the checkpoint to the external data file tensor by tensor as the model is written — converted to
    /// <see cref="ExportOptions.WeightType"/>, transposed where the layout says, and in merged mode merged on the way
    /// (W + ΔW by the same <see cref="MergePlan"/> as a checkpoint merge). Memory stays at a few tens of MB plus one
    /// merged tensor in fp32, whatever the model's size, and no tensor is limited to 2 GiB. Every mode streams: unmerged and
    /// adapters modes attach the adapter to the meta-device modules (<see cref="PeftModelAdapter.AttachWithoutWeights"/>). The bytes
    /// are those <see cref="Export"/> writes for the same model loaded with its adapter.
    /// </summary>
    /// <param name="modelDirectory">The checkpoint folder (config.json and safetensors).</param>
    /// <param name="adapters">None for <see cref="OnnxExportMode.Base"/>; one or more (weighted) for <see cref="OnnxExportMode.Merged"/>;
    /// exactly one for <see cref="OnnxExportMode.Unmerged"/> (its LoRA factors stream from the adapter file); one or more at weight 1 for
    /// <see cref="OnnxExportMode.Adapters"/> (the graph's LoRA inputs are the first adapter's modules; one .onnx_adapter file per adapter).
    /// Adapters stay open until the export returns.</param>
    /// <param name="path">The .onnx file to write.</param>
    /// <param name="options">Export choices; <see cref="ExportOptions.AdapterName"/> and the fingerprinted files as given.</param>
    /// <param name="mergeOptions">How several adapters combine (default <see cref="MergeOptions.Default"/>).</param>
    /// <exception cref="OnnxLoraException">Bad input: the checkpoint or an adapter is malformed or they do not fit; the adapter count does
    /// not suit the mode; or as <see cref="Export"/>.</exception>
    public static ExportResult ExportPretrained(string modelDirectory, IReadOnlyList<WeightedAdapter> adapters, string path, ExportOptions? options = null,
        MergeOptions? mergeOptions = null)
    {
        ArgumentNullException.ThrowIfNull(adapters);
        options ??= ExportOptions.Default;
        Validate(options);
        switch (options.Mode)
        {
            case OnnxExportMode.Base when adapters.Count > 0:
                throw ExportThrow.Option(nameof(ExportOptions.Mode), "Base", "no adapters (base exports the model without them)");
            case OnnxExportMode.Merged when adapters.Count == 0:
            case OnnxExportMode.Unmerged when adapters.Count != 1:
            case OnnxExportMode.Adapters when adapters.Count == 0:
                throw ExportThrow.Option(nameof(adapters), $"{adapters.Count} adapters", options.Mode switch
                {
                    OnnxExportMode.Merged => "at least one to merge",
                    OnnxExportMode.Adapters => "at least one to write as an .onnx_adapter file",
                    _ => "exactly one for unmerged",
                });
        }
        if (options.Mode == OnnxExportMode.Adapters)
        {
            CheckAdapterFiles(adapters);
        }
        using var pretrained = PretrainedModel.LoadWithoutWeights(modelDirectory);
        List<LoraLayerFacts> layers = [];
        IReadOnlyList<string> warnings = [];
        if (options.Mode is OnnxExportMode.Unmerged or OnnxExportMode.Adapters)
        {
            // LoRA branches as nodes (unmerged) or inputs (adapters) of the first adapter's modules: its factors stream from its file.
            PeftModelAdapter.AttachWithoutWeights(pretrained, adapters[0].Adapter);
            layers = LoraLayers(pretrained.Module);
        }
        else if (adapters.Count > 0)
        {
            var plan = MergePlan.Create(adapters, pretrained.Weights.Specs, pretrained.Directory, mergeOptions, pretrained.Config.ModelType);
            foreach (string name in plan.TargetTensors)
            {
                pretrained.Weights.Rewrite(name, plan.RewriteFor(name));
            }
            warnings = plan.Warnings;
            if (adapters.Count == 1)
            {
                layers = [.. plan.Entries.Select(e => new LoraLayerFacts(e.Rank, e.Alpha, e.Scaling))];
            }
            else
            {
                // Several adapters fold into the weights as one; the model is described as a base model (no single rank or scaling).
                options = options with { Mode = OnnxExportMode.Base };
            }
        }
        var built = Build(pretrained.Module, options, pretrained.Weights, layers);
        if (options.Mode != OnnxExportMode.Adapters)
        {
            return Save(built, path, options, layers.Count) with { Warnings = warnings };
        }
        return SaveWithAdapterFiles(built, [.. adapters.Select(a => a.Adapter)], path, options, layers.Count);
    }

    /// <summary>
    /// Exports <paramref name="model"/>, whose LoRA layers (attached from the first adapter) choose the targeted modules, as
    /// the adapter-ready graph (<see cref="OnnxExportMode.Adapters"/>: LoRA factors as graph inputs with a symbolic rank and
    /// empty rank-0 defaults), and beside it one ONNX Runtime adapter file per adapter, as <see cref="ExportPretrained"/> does
    /// for a checkpoint. With <see cref="ExportOptions.UsePast"/> the graph is the key/value-cache decoder, the one ONNX Runtime
    /// GenAI runs with its <c>Adapters</c> API.
    /// </summary>
    /// <param name="model">The model with LoRA layers attached (e.g. <c>PeftModelAdapter.Attach</c> of the first adapter).</param>
    /// <param name="adapters">The adapters to write as <c>.onnx_adapter</c> files (the attached one among them, normally first).</param>
    /// <param name="path">The .onnx file to write; the adapter files go to its folder.</param>
    /// <param name="options">Export choices; <see cref="ExportOptions.Mode"/> must be <see cref="OnnxExportMode.Adapters"/>.</param>
    /// <returns>The export, with <see cref="ExportResult.AdapterFiles"/> listing the adapter files in adapter order.</returns>
    /// <exception cref="OnnxLoraException">Bad input: no adapters, two adapter folders with the same name, an adapter that
    /// cannot be written as A/B inputs (DoRA, LoHa, LoKr, lora_bias, modules_to_save) or does not fit the graph; or as <see cref="Export"/>.</exception>
    public static ExportResult ExportWithAdapters(nn.Module model, IReadOnlyList<PeftAdapter> adapters, string path, ExportOptions options)
    {
        ArgumentNullException.ThrowIfNull(adapters);
        ArgumentNullException.ThrowIfNull(options);
        if (options.Mode != OnnxExportMode.Adapters)
        {
            throw ExportThrow.Option(nameof(ExportOptions.Mode), options.Mode.ToString(), "Adapters (the .onnx_adapter files fit only the adapter-ready graph)");
        }
        if (adapters.Count == 0)
        {
            throw ExportThrow.Option(nameof(adapters), "0 adapters", "at least one to write as an .onnx_adapter file");
        }
        CheckAdapterFiles([.. adapters.Select(a => new WeightedAdapter(a, 1.0))]);
        var layers = LoraLayers(model);
        return SaveWithAdapterFiles(Build(model, options, weights: null, layers), adapters, path, options, layers.Count);
    }

    /// <summary>
    /// <see cref="OnnxExportMode.Adapters"/>: the model, and beside it one ONNX Runtime adapter file per adapter,
    /// <c>&lt;adapter folder name&gt;.onnx_adapter</c> (<see cref="OnnxAdapterFile.FromPeft"/>, in the graph's weight type). Every
    /// adapter file is checked against the graph's inputs before anything is written; adapters may target fewer modules than
    /// the first (their other inputs keep the rank-0 defaults), not others.
    /// </summary>
    private static ExportResult SaveWithAdapterFiles((ModelProto Proto, IReadOnlyDictionary<string, OnnxTensorSource> Data) built, IReadOnlyList<PeftAdapter> adapters,
        string path, ExportOptions options, int loraLayers)
    {
        var files = AdapterFilePaths(adapters, path);
        var parameters = new List<IReadOnlyList<OnnxAdapterParameter>>();
        foreach (var a in adapters)
        {
            var p = OnnxAdapterFile.FromPeft(a, options.WeightType);
            OnnxAdapterFile.CheckFits(new OnnxAdapter(OnnxAdapterFile.CurrentFormatVersion, 0, 0, p), a.Directory, built.Proto.Graph, path);
            parameters.Add(p);
        }
        var result = Save(built, path, options, loraLayers);
        for (int i = 0; i < adapters.Count; i++)
        {
            OnnxAdapterFile.Write(files[i], parameters[i], overwrite: options.Overwrite);
        }
        return result with { AdapterFiles = files };
    }

    /// <summary>Adapters mode: weights do not apply and the adapter files must not collide (checked before any work).</summary>
    private static void CheckAdapterFiles(IReadOnlyList<WeightedAdapter> adapters)
    {
        if (adapters.FirstOrDefault(a => a.Weight != 1.0) is { } weighted)
        {
            throw ExportThrow.Option("adapter weight", $"{weighted.Weight} for {weighted.Adapter.Directory}", "1 (each adapter goes to its own .onnx_adapter file; weights do not apply)");
        }
        var names = adapters.Select(a => AdapterFileName(a.Adapter.Directory)).ToList();
        if (names.Distinct(StringComparer.Ordinal).Count() != names.Count)
        {
            throw ExportThrow.Option("adapters", "two adapter folders with the same name", "distinct folder names (their .onnx_adapter files would collide)");
        }
    }

    private static string AdapterFileName(string adapterDirectory) => Path.GetFileName(Path.GetFullPath(adapterDirectory).TrimEnd('/')) + OnnxAdapterFile.Extension;

    private static List<string> AdapterFilePaths(IReadOnlyList<PeftAdapter> adapters, string path)
    {
        string outDir = Path.GetDirectoryName(Path.GetFullPath(path))!;
        return [.. adapters.Select(a => Path.Combine(outDir, AdapterFileName(a.Directory)))];
    }

    /// <summary>Builds the ONNX model in memory (no file is written).</summary>
    /// <inheritdoc cref="Export" path="/exception"/>
    public static ModelProto BuildModel(nn.Module model, ExportOptions? options = null)
    {
        options ??= ExportOptions.Default;
        var (proto, data) = Build(model, options, weights: null, LoraLayers(model));
        OnnxFile.LoadDeferredData(proto, data);
        return proto;
    }

    private static ExportResult Save((ModelProto Proto, IReadOnlyDictionary<string, OnnxTensorSource> Data) built, string path, ExportOptions options, int loraLayers)
    {
        string fullPath = Path.GetFullPath(path);
        string? dataPath = OnnxFile.Save(built.Proto, fullPath, new OnnxSaveOptions { ExternalData = options.ExternalData, Overwrite = options.Overwrite }, built.Data);
        return new ExportResult(fullPath, dataPath, built.Proto.Graph.Node.Count, built.Proto.Graph.Initializer.Count, loraLayers);
    }

    /// <summary>The graph with its metadata; the initializers' data stays in <see cref="OnnxGraphBuilder.DeferredData"/> until written.</summary>
    private static (ModelProto Proto, IReadOnlyDictionary<string, OnnxTensorSource> Data) Build(nn.Module model, ExportOptions options, OnnxWeightStore? weights,
        IReadOnlyList<LoraLayerFacts> layers)
    {
        ArgumentNullException.ThrowIfNull(model);
        Validate(options);
        if (model is not IOnnxExportableModel exportable)
        {
            throw ExportThrow.UnknownModel(model.GetType());
        }
        if (options.UsePast && model is not IOnnxExportableDecoder)
        {
            throw ExportThrow.Option(nameof(ExportOptions.UsePast), $"true for a {model.GetType().Name}", "a decoder (LlamaForCausalLM: llama, mistral, qwen2)");
        }
        var builder = new OnnxGraphBuilder(options.Opset, graphName: "main_graph");
        var emitOptions = new OnnxEmitOptions
        {
            Mode = options.Mode,
            WeightType = options.WeightType,
            PositionIdsInput = options.PositionIdsInput,
            TokenTypeIdsInput = options.TokenTypeIdsInput,
            UsePast = options.UsePast,
        };
        using (no_grad())
        {
            exportable.EmitOnnxGraph(new OnnxEmitContext(builder, emitOptions, weights));
        }
        foreach (var (key, value) in Metadata(layers, options))
        {
            builder.AddMetadata(key, value);
        }
        return (builder.Build(ProducerName, ProducerVersion), builder.DeferredData);
    }

    /// <summary>The producer version: this assembly's version.</summary>
    public static string ProducerVersion { get; } = typeof(OnnxExporter).Assembly.GetName().Version?.ToString(3) ?? "0.0.0";

    private static void Validate(ExportOptions options)
    {
        if (options.Opset is < 17 or > 21)
        {
            throw ExportThrow.Option(nameof(ExportOptions.Opset), options.Opset.ToString(CultureInfo.InvariantCulture), "17..21");
        }
        if (!Enum.IsDefined(options.Mode))
        {
            throw ExportThrow.Option(nameof(ExportOptions.Mode), options.Mode.ToString(), "Base, Merged, Unmerged or Adapters");
        }
        if (options.WeightType is not (DType.F32 or DType.F16))
        {
            throw ExportThrow.Option(nameof(ExportOptions.WeightType), options.WeightType.ToString(), "F32 or F16");
        }
        if (!Enum.IsDefined(options.ExternalData))
        {
            throw ExportThrow.Option(nameof(ExportOptions.ExternalData), options.ExternalData.ToString(), "Auto, Always or Never");
        }
        foreach (string file in options.BaseModelFiles.Concat(options.AdapterFiles))
        {
            if (!File.Exists(file))
            {
                throw OnnxLoraException.NotFound("file to fingerprint for the export metadata", file);
            }
        }
    }

    /// <summary>What the metadata says about one LoRA layer.</summary>
    private readonly record struct LoraLayerFacts(int Rank, double Alpha, double Scaling);

    private static List<LoraLayerFacts> LoraLayers(nn.Module model) =>
        [.. LoraInjection.LoraLayers(model).Select(l => (LoraLayer)l.Layer).Select(l => new LoraLayerFacts(l.Rank, l.Alpha, l.Scaling))];

    private static List<(string Key, string Value)> Metadata(IReadOnlyList<LoraLayerFacts> layers, ExportOptions options)
    {
        var entries = new List<(string, string)>
        {
            ("onnxlora.mode", options.Mode.ToString().ToLowerInvariant()),
            ("onnxlora.weight_type", options.WeightType == DType.F16 ? "fp16" : "fp32"),
            ("onnxlora.linear_weight_layout", "transposed [in, out] under the Hugging Face name; unmerged adapters transposed under their PEFT keys"),
        };
        if (options.AdapterName is { Length: > 0 } name)
        {
            entries.Add(("adapter_name", name));
        }
        // An adapter-ready graph is rank-agnostic: each run's adapter file brings its own factors.
        if (layers.Count > 0 && options.Mode != OnnxExportMode.Adapters)
        {
            var ranks = layers.Select(l => l.Rank);
            var alphas = layers.Select(l => l.Alpha);
            var scalings = layers.Select(l => l.Scaling);
            entries.Add(("lora_rank", Distinct(ranks.Select(r => r.ToString(CultureInfo.InvariantCulture)))));
            entries.Add(("lora_alpha", Distinct(alphas.Select(a => a.ToString("R", CultureInfo.InvariantCulture)))));
            entries.Add(("lora_scaling", Distinct(scalings.Select(s => s.ToString("R", CultureInfo.InvariantCulture)))));
        }
        if (options.BaseModelFiles.Count > 0)
        {
            entries.Add(("base_sha256", Fingerprints(options.BaseModelFiles)));
        }
        if (options.AdapterFiles.Count > 0)
        {
            entries.Add(("adapter_sha256", Fingerprints(options.AdapterFiles)));
        }
        return entries;
    }

    private static string Distinct(IEnumerable<string> values) => string.Join(",", values.Distinct().Order(StringComparer.Ordinal));

    private static string Fingerprints(IEnumerable<string> files) =>
        string.Join(";", files.Select(f => (Name: Path.GetFileName(f), Hash: Sha256(f))).OrderBy(x => x.Name, StringComparer.Ordinal).Select(x => $"{x.Name}={x.Hash}"));

    private static string Sha256(string file)
    {
        using var stream = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20);
        return Convert.ToHexStringLower(SHA256.HashData(stream));
    }
}
