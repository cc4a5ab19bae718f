using OnnxLora.Core;
using OnnxLora.Core.HuggingFace;
using OnnxLora.Models.Bert;
using OnnxLora.Models.Llama;
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
            _ => throw OnnxLoraException.Invalid(HfConfig.ResolvePath(directory), $"model_type '{config.ModelType}' is not supported; expected one of {string.Join(", ", HfConfig.SupportedModelTypes)}."),
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
}
