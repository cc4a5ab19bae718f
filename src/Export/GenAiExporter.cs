using System.Text.Json;
using OnnxLora.Core;
using OnnxLora.Core.GenAi;
using OnnxLora.Core.HuggingFace;
using OnnxLora.Core.IO;
using OnnxLora.Core.Peft;
using OnnxLora.Merge;
using OnnxLora.Models.Llama;
using OnnxLora.Models.Onnx;

namespace OnnxLora.Export;

/// <summary>
/// Writes a model folder that ONNX Runtime GenAI runs: <c>model.onnx</c> exported with the key/value cache
/// (<see cref="ExportOptions.UsePast"/>; external data when large), <c>genai_config.json</c> describing it, and the
/// tokenizer files copied from the checkpoint. The folder appears whole or not at all.
/// </summary>
public static class GenAiExporter
{
    /// <summary>The model file name inside the folder.</summary>
    public const string ModelFileName = "model.onnx";

    /// <summary>Tokenizer files GenAI needs (its tokenizer reads the Hugging Face <c>tokenizer.json</c> and <c>tokenizer_config.json</c>).</summary>
    public static IReadOnlyList<string> RequiredTokenizerFiles { get; } = ["tokenizer.json", "tokenizer_config.json"];

    /// <summary>Files copied along when the checkpoint has them.</summary>
    public static IReadOnlyList<string> OptionalTokenizerFiles { get; } = ["special_tokens_map.json", "tokenizer.model", "generation_config.json"];

    /// <summary>
    /// Exports <paramref name="model"/> (its LoRA layers as <see cref="ExportOptions.Mode"/> says) into the folder
    /// <paramref name="outputDirectory"/>, with the tokenizer files of <paramref name="tokenizerDirectory"/> (normally the
    /// base checkpoint). <see cref="ExportOptions.UsePast"/> is implied.
    /// </summary>
    /// <param name="model">The decoder, with LoRA layers attached unless the mode is base.</param>
    /// <param name="tokenizerDirectory">Where the tokenizer files come from (normally the base checkpoint).</param>
    /// <param name="outputDirectory">The folder to write.</param>
    /// <param name="options">Export choices; <see cref="ExportOptions.UsePast"/> is implied.</param>
    /// <param name="adapters">With <see cref="OnnxExportMode.Adapters"/>: the adapters written as <c>&lt;adapter folder name&gt;.onnx_adapter</c>
    /// into the folder beside <c>model.onnx</c> (<see cref="OnnxExporter.ExportWithAdapters"/>), for GenAI's <c>Adapters.LoadAdapter</c>;
    /// GenAI activates one per generator (<c>Generator.SetActiveAdapter</c>) and feeds it through ONNX Runtime's
    /// <c>RunOptions.AddActiveLoraAdapter</c>, the graph's rank-0 defaults standing in for no adapter (onnxruntime-genai
    /// <c>src/models/adapters.cpp</c>). Ignored in the other modes.</param>
    /// <exception cref="OnnxLoraException">Bad input: a tokenizer file is missing, the folder exists without
    /// <see cref="ExportOptions.Overwrite"/>, an export option is invalid, or an adapter does not fit (adapters mode).</exception>
    public static GenAiExportResult Export(LlamaForCausalLM model, string tokenizerDirectory, string outputDirectory, ExportOptions? options = null,
        IReadOnlyList<PeftAdapter>? adapters = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        return Write(model.Config, tokenizerDirectory, outputDirectory, options ?? ExportOptions.Default, (path, o) => o.Mode == OnnxExportMode.Adapters
            ? OnnxExporter.ExportWithAdapters(model, adapters ?? [], path, o)
            : OnnxExporter.Export(model, path, o));
    }

    /// <summary>
    /// Exports the decoder checkpoint in <paramref name="modelDirectory"/> into the folder <paramref name="outputDirectory"/> without
    /// loading its weights (<see cref="OnnxExporter.ExportPretrained"/>: they stream from the checkpoint and the adapters' files,
    /// merged on the way in merged mode), with the checkpoint's tokenizer files. <see cref="ExportOptions.UsePast"/> is implied.
    /// </summary>
    /// <param name="modelDirectory">The checkpoint folder (config.json of a llama, mistral or qwen2 model, safetensors, tokenizer files).</param>
    /// <param name="adapters">As for <see cref="OnnxExporter.ExportPretrained"/>.</param>
    /// <param name="outputDirectory">The folder to write.</param>
    /// <param name="options">Export choices.</param>
    /// <param name="mergeOptions">How several adapters combine (default <see cref="MergeOptions.Default"/>).</param>
    /// <exception cref="OnnxLoraException">Bad input: the checkpoint is not a decoder, or as <see cref="Export"/> and
    /// <see cref="OnnxExporter.ExportPretrained"/>.</exception>
    public static GenAiExportResult ExportPretrained(string modelDirectory, IReadOnlyList<WeightedAdapter> adapters, string outputDirectory, ExportOptions? options = null,
        MergeOptions? mergeOptions = null)
    {
        var loaded = HfConfig.Load(modelDirectory);
        var config = loaded as LlamaConfig
            ?? throw OnnxLoraException.Invalid(HfConfig.ResolvePath(modelDirectory), "field 'model_type'", $"\"{loaded.ModelType}\"",
                "a decoder (llama, mistral or qwen2): a GenAI folder holds a text-generation model");
        return Write(config, modelDirectory, outputDirectory, options ?? ExportOptions.Default,
            (path, o) => OnnxExporter.ExportPretrained(modelDirectory, adapters, path, o, mergeOptions));
    }

    /// <summary>The folder around one model export (<paramref name="export"/> writes the .onnx file it is given).</summary>
    private static GenAiExportResult Write(LlamaConfig modelConfig, string tokenizerDirectory, string outputDirectory, ExportOptions options,
        Func<string, ExportOptions, ExportResult> export)
    {
        foreach (string name in RequiredTokenizerFiles)
        {
            string source = Path.Combine(tokenizerDirectory, name);
            if (!File.Exists(source))
            {
                throw OnnxLoraException.NotFound($"tokenizer file for the GenAI folder (GenAI needs {string.Join(" and ", RequiredTokenizerFiles)})", source);
            }
        }
        AtomicDirectory.CheckDestination(outputDirectory, options.Overwrite);
        using var folder = AtomicDirectory.Create(outputDirectory, options.Overwrite);
        var exported = export(folder.File(ModelFileName), options with { UsePast = true, Overwrite = false });
        var config = CreateConfig(modelConfig);
        File.WriteAllText(folder.File(GenAiConfig.FileName), config.ToJson());
        foreach (string name in RequiredTokenizerFiles.Concat(OptionalTokenizerFiles))
        {
            string source = Path.Combine(tokenizerDirectory, name);
            if (File.Exists(source))
            {
                File.Copy(source, folder.File(name));
            }
        }
        var files = Directory.GetFiles(folder.TempPath).Select(Path.GetFileName).OfType<string>().Order(StringComparer.Ordinal).ToList();
        folder.Commit();
        string directory = folder.FinalPath;
        return new GenAiExportResult(directory, files, exported with
        {
            ModelPath = Path.Combine(directory, ModelFileName),
            ExternalDataPath = exported.ExternalDataPath is null ? null : Path.Combine(directory, Path.GetFileName(exported.ExternalDataPath)),
            AdapterFiles = [.. exported.AdapterFiles.Select(f => Path.Combine(directory, Path.GetFileName(f)))],
        });
    }

    /// <summary>The genai_config.json for a LLaMA-family model exported with past (greedy search up to the context length).</summary>
    public static GenAiConfig CreateConfig(LlamaConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        var eos = config.EosTokenIds.Count == 1
            ? JsonSerializer.SerializeToElement(config.EosTokenIds[0])
            : JsonSerializer.SerializeToElement(config.EosTokenIds.ToArray());
        return new GenAiConfig
        {
            Model = new GenAiModelSection
            {
                Type = config.ModelType,
                ContextLength = config.MaxPositionEmbeddings,
                VocabSize = config.VocabSize,
                BosTokenId = (int)(config.BosTokenId ?? 0),
                EosTokenId = eos,
                PadTokenId = (int)(config.PadTokenId ?? config.EosTokenIds.FirstOrDefault()),
                Decoder = new GenAiDecoderSection
                {
                    Filename = ModelFileName,
                    HeadSize = config.HeadDim,
                    HiddenSize = config.HiddenSize,
                    NumAttentionHeads = config.NumAttentionHeads,
                    NumHiddenLayers = config.NumHiddenLayers,
                    NumKeyValueHeads = config.NumKeyValueHeads,
                    Inputs = new GenAiDecoderInputs(),
                    Outputs = new GenAiDecoderOutputs(),
                },
            },
            Search = new GenAiSearchSection { MaxLength = config.MaxPositionEmbeddings },
        };
    }
}

/// <summary>What <see cref="GenAiExporter.Export"/> wrote.</summary>
/// <param name="Directory">The folder.</param>
/// <param name="Files">File names in the folder.</param>
/// <param name="Model">The model's export: its model.onnx and external data paths in the folder, node and initializer counts.</param>
public sealed record GenAiExportResult(string Directory, IReadOnlyList<string> Files, ExportResult Model);
