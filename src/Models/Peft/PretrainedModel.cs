using OnnxLora.Core;
using OnnxLora.Core.HuggingFace;
using OnnxLora.Core.Safetensors;
using OnnxLora.Models.Bert;
using OnnxLora.Models.Llama;
using OnnxLora.Models.Onnx;
using TorchSharp;

namespace OnnxLora.Models.Peft;

/// <summary>
/// Loads a Hugging Face checkpoint folder into the model class its config.json names: model_type picks the
/// family, <c>architectures</c> the head (as transformers' AutoModel classes read it).
/// </summary>
public static class PretrainedModel
{
    /// <summary>The BERT architectures this project models; any other BERT head is refused rather than dropped.</summary>
    public static IReadOnlyList<string> SupportedBertArchitectures { get; } = [nameof(BertModel), BertForSequenceClassification.ArchitectureName];

    /// <summary>
    /// LlamaForCausalLM for llama/mistral/qwen2; for bert, BertModel (architectures BertModel or absent) or
    /// BertForSequenceClassification; in eval mode.
    /// </summary>
    /// <exception cref="OnnxLoraException">Bad input: config.json or the weights are missing, malformed or do not match, or
    /// architectures names a head this project does not model (the message names it).</exception>
    public static torch.nn.Module Load(string directory)
    {
        var config = HfConfig.Load(directory);
        torch.nn.Module model = config switch
        {
            LlamaConfig => LlamaForCausalLM.FromPretrained(directory),
            BertConfig => BertArchitecture(config) switch
            {
                BertForSequenceClassification.ArchitectureName => BertForSequenceClassification.FromPretrained(directory),
                _ => BertModel.FromPretrained(directory),
            },
            _ => throw Unsupported(directory, config),
        };
        model.eval();
        return model;
    }

    /// <summary>The BERT class config.json's architectures names (BertModel when absent).</summary>
    /// <exception cref="OnnxLoraException">Bad input: a BERT head this project does not model.</exception>
    public static string BertArchitecture(HfConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        string architecture = config.Architectures.Count > 0 ? config.Architectures[0] : nameof(BertModel);
        return SupportedBertArchitectures.Contains(architecture)
            ? architecture
            : throw OnnxLoraException.Invalid(config.SourcePath ?? "config.json", "field 'architectures'", $"\"{architecture}\"",
                $"one of {string.Join(", ", SupportedBertArchitectures)}: that head is not modelled here and would be lost (to use the encoder alone, set architectures to [\"BertModel\"])");
    }

    /// <summary>
    /// The model of the folder's family on TorchSharp's meta device (every module and shape, no weight data),
    /// with the checkpoint matched against it exactly as <see cref="Load"/> does and each weight's place
    /// recorded: what an ONNX export emits its graph from while the weights stream from the checkpoint.
    /// </summary>
    /// <inheritdoc cref="Load" path="/exception"/>
    public static PretrainedWithoutWeights LoadWithoutWeights(string directory)
    {
        var config = HfConfig.Load(directory);
        if (config is not (LlamaConfig or BertConfig))
        {
            throw Unsupported(directory, config);
        }
        var checkpoint = SafetensorsCheckpoint.Open(directory);
        try
        {
            var weights = new OnnxWeightStore();
            torch.nn.Module model = config switch
            {
                LlamaConfig llama => LlamaForCausalLM.FromCheckpoint(llama, checkpoint, weights),
                _ => BertArchitecture(config) switch
                {
                    BertForSequenceClassification.ArchitectureName => BertForSequenceClassification.FromCheckpoint((BertConfig)config, checkpoint, weights),
                    _ => BertModel.FromCheckpoint((BertConfig)config, checkpoint, weights),
                },
            };
            model.eval();
            return new PretrainedWithoutWeights(model, config, weights, checkpoint);
        }
        catch
        {
            checkpoint.Dispose();
            throw;
        }
    }

    private static OnnxLoraException Unsupported(string directory, HfConfig config) =>
        OnnxLoraException.Invalid(HfConfig.ResolvePath(directory), $"model_type '{config.ModelType}' is not supported; expected one of {string.Join(", ", HfConfig.SupportedModelTypes)}.");
}

/// <summary>A model on the meta device and where its weights are (<see cref="PretrainedModel.LoadWithoutWeights"/>); owns both and the open checkpoint.</summary>
public sealed class PretrainedWithoutWeights : IDisposable
{
    private readonly SafetensorsCheckpoint _checkpoint;

    internal PretrainedWithoutWeights(torch.nn.Module module, HfConfig config, OnnxWeightStore weights, SafetensorsCheckpoint checkpoint)
    {
        Module = module;
        Config = config;
        Weights = weights;
        _checkpoint = checkpoint;
    }

    /// <summary>The modules (parameters on the meta device: shapes, no data).</summary>
    public torch.nn.Module Module { get; }

    /// <summary>The folder's config.json.</summary>
    public HfConfig Config { get; }

    /// <summary>Each parameter's checkpoint tensor, by Hugging Face name.</summary>
    public OnnxWeightStore Weights { get; }

    /// <summary>The checkpoint folder.</summary>
    public string Directory => _checkpoint.Directory;

    public void Dispose()
    {
        Module.Dispose();
        _checkpoint.Dispose();
    }
}
