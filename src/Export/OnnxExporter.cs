using System.Globalization;
using System.Security.Cryptography;
using Onnx;
using OnnxLora.Core;
using OnnxLora.Core.Onnx;
using OnnxLora.Export.Internals;
using OnnxLora.Models.Lora;
using OnnxLora.Models.Onnx;
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
        var proto = BuildModel(model, options);
        string fullPath = Path.GetFullPath(path);
        string? dataPath = OnnxFile.Save(proto, fullPath, new OnnxSaveOptions { ExternalData = options.ExternalData, Overwrite = options.Overwrite });
        return new ExportResult(fullPath, dataPath, proto.Graph.Node.Count, proto.Graph.Initializer.Count, LoraLayers(model).Count);
    }

    /// <summary>Builds the ONNX model in memory (no file is written).</summary>
    /// <inheritdoc cref="Export" path="/exception"/>
    public static ModelProto BuildModel(nn.Module model, ExportOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        options ??= ExportOptions.Default;
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
            exportable.EmitOnnxGraph(new OnnxEmitContext(builder, emitOptions));
        }
        foreach (var (key, value) in Metadata(model, options))
        {
            builder.AddMetadata(key, value);
        }
        return builder.Build(ProducerName, ProducerVersion);
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
            throw ExportThrow.Option(nameof(ExportOptions.Mode), options.Mode.ToString(), "Base, Merged or Unmerged");
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

    private static List<LoraLayer> LoraLayers(nn.Module model) => [.. LoraInjection.LoraLayers(model).Select(l => (LoraLayer)l.Layer)];

    private static List<(string Key, string Value)> Metadata(nn.Module model, ExportOptions options)
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
        var layers = LoraLayers(model);
        if (layers.Count > 0)
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
