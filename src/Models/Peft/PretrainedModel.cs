using OnnxLora.Core;
using OnnxLora.Core.HuggingFace;
using OnnxLora.Models.Bert;
using OnnxLora.Models.Llama;
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
            _ => throw OnnxLoraException.Invalid(HfConfig.ResolvePath(directory), $"model_type '{config.ModelType}' is not supported; expected one of {string.Join(", ", HfConfig.SupportedModelTypes)}."),
        };
        model.eval();
        return model;
    }
}
