using OnnxLora.Core;
using OnnxLora.Models.Bert;
using OnnxLora.Models.Llama;
using OnnxLora.Validate;
using static TorchSharp.torch;

namespace OnnxLora.MergeExport.Internals;

/// <summary>The TorchSharp model itself as the validation's eager reference: same inputs, forward in fp32.</summary>
internal static class EagerModel
{
    public static EagerReference Reference(nn.Module model) => inputs =>
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var ids = Int64(inputs, "input_ids") ?? throw OnnxLoraException.Invalid("eager reference", "the model has no input_ids input to run the TorchSharp model on.");
        var mask = Int64(inputs, "attention_mask");
        switch (model)
        {
            case LlamaForCausalLM llama:
                {
                    var positions = Int64(inputs, "position_ids");
                    var logits = positions is null ? llama.forward(ids, mask) : llama.forward(ids, mask, positions);
                    return new Dictionary<string, float[]> { ["logits"] = logits.to(ScalarType.Float32).contiguous().data<float>().ToArray() };
                }
            case BertModel bert:
                {
                    var hidden = bert.forward(ids, mask, Int64(inputs, "token_type_ids"));
                    var outputs = new Dictionary<string, float[]> { ["last_hidden_state"] = Floats(hidden) };
                    if (bert.Pooler is not null)
                    {
                        outputs["pooler_output"] = Floats(bert.Pool(hidden));
                    }
                    return outputs;
                }
            case BertForSequenceClassification classifier:
                return new Dictionary<string, float[]> { ["logits"] = Floats(classifier.forward(ids, mask, Int64(inputs, "token_type_ids"))) };
            default:
                throw OnnxLoraException.Invalid("eager reference", $"model type {model.GetType().Name} has no eager reference.");
        }
    };

    private static float[] Floats(Tensor t) => t.to(ScalarType.Float32).contiguous().data<float>().ToArray();

    private static Tensor? Int64(IReadOnlyDictionary<string, InputTensor> inputs, string name)
    {
        if (!inputs.TryGetValue(name, out var input))
        {
            return null;
        }
        long[] shape = [.. input.Shape];
        return input.ElementType switch
        {
            DType.I64 => tensor(input.GetData<long>().ToArray(), shape),
            DType.I32 => tensor(input.GetData<int>().ToArray(), shape).to(ScalarType.Int64),
            _ => throw OnnxLoraException.Invalid("eager reference", $"input '{name}'", $"element type {input.ElementType}", "integers"),
        };
    }
}
