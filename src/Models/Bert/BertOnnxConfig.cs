using OnnxLora.Core;
using OnnxLora.Core.HuggingFace;
using OnnxLora.Models.Onnx;

namespace OnnxLora.Models.Bert;

/// <summary>The graph inputs of a BERT export (null <see cref="TokenTypeIds"/>: every token is of type 0).</summary>
internal sealed record BertOnnxInputs(string InputIds, string AttentionMask, string? TokenTypeIds);

/// <summary>
/// The export config of the BERT family, in the shape of Hugging Face Optimum's <c>BertOnnxConfig</c>
/// (optimum/exporters/onnx/model_configs.py) and its task outputs (<c>OnnxConfig._TASK_TO_COMMON_OUTPUTS</c>
/// in optimum/exporters/onnx/base.py): it decides which inputs and outputs the graph has; the modules
/// only emit their forward. Inputs: <c>input_ids</c>, <c>attention_mask</c> and <c>token_type_ids</c>
/// (int64 [batch, sequence]); Optimum always declares <c>token_type_ids</c> for BERT, we declare it
/// whenever the model has more than one segment type (config.json <c>type_vocab_size</c> &gt; 1) or
/// <see cref="OnnxEmitOptions.TokenTypeIdsInput"/> asks for it. Outputs by task: feature extraction
/// (<see cref="BertModel"/>) <c>last_hidden_state</c> [batch, sequence, hidden] and <c>pooler_output</c>
/// [batch, hidden] (the names of transformers' <c>BaseModelOutputWithPooling</c>); text classification
/// (<see cref="BertForSequenceClassification"/>) <c>logits</c> [batch, num_labels]. Outputs are fp32.
/// Dimension names are this project's "batch" and "sequence" (Optimum says batch_size / sequence_length).
/// </summary>
internal static class BertOnnxConfig
{
    public const string LastHiddenState = "last_hidden_state";

    public const string PoolerOutput = "pooler_output";

    public const string Logits = "logits";

    public static BertOnnxInputs DeclareInputs(OnnxEmitContext context, BertConfig config)
    {
        var builder = context.Builder;
        string ids = builder.AddInput("input_ids", DType.I64, "batch", "sequence");
        string mask = builder.AddInput("attention_mask", DType.I64, "batch", "sequence");
        string? types = context.Options.TokenTypeIdsInput || config.TypeVocabSize > 1 ? builder.AddInput("token_type_ids", DType.I64, "batch", "sequence") : null;
        return new BertOnnxInputs(ids, mask, types);
    }

    /// <summary>Declares graph output <paramref name="name"/> (fp32, the given dims) as the value <paramref name="value"/> in the compute type.</summary>
    public static void DeclareOutput(OnnxEmitContext context, string name, string value, params ReadOnlySpan<Core.Onnx.OnnxDim> dims)
    {
        context.Builder.AddNode("Identity", [context.ToFloat32(value)], [name], $"/{name}/Identity");
        context.Builder.AddOutput(name, DType.F32, dims);
    }
}
