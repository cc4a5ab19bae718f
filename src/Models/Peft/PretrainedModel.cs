using OnnxLora.Core;
using OnnxLora.Core.HuggingFace;
using OnnxLora.Core.Safetensors;
using OnnxLora.Models.Bert;
using OnnxLora.Models.Llama;
using OnnxLora.Models.Onnx;
using TorchSharp;

namespace OnnxLora.Models.Peft;

/// <summary>Loads a Hugging Face checkpoint folder into the model class of its family (config.json's model_type).</summary>
public static class PretrainedModel
{
    /// <summary>LlamaForCausalLM for llama/mistral/qwen2, BertModel for bert; in eval mode.</summary>
    /// <exception cref="OnnxLoraException">Bad input: config.json or the weights are missing, malformed or do not match.</exception>
    public static torch.nn.Module Load(string directory)
    {
        var config = HfConfig.Load(directory);
        torch.nn.Module model = config switch
        {
            LlamaConfig => LlamaForCausalLM.FromPretrained(directory),
            BertConfig => BertModel.FromPretrained(directory),
            _ => throw Unsupported(directory, config),
        };
        model.eval();
        return model;
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
                _ => BertModel.FromCheckpoint((BertConfig)config, checkpoint, weights),
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
