using OnnxLora.Core;
using OnnxLora.Models.Onnx;

namespace OnnxLora.Models.Llama;

/// <summary>
/// ONNX emission of the whole causal LM. Inputs: <c>input_ids</c> and <c>attention_mask</c> (int64
/// [batch, sequence]) and, when asked for, <c>position_ids</c>; output: <c>logits</c> (fp32
/// [batch, sequence, vocab], cast from fp16 in an fp16 export). A tied LM head reuses
/// <c>model.embed_tokens.weight</c> through a Transpose node.
/// </summary>
/// <remarks>
/// With <see cref="OnnxEmitOptions.UsePast"/> (Optimum's <c>text-generation-with-past</c>) the graph also takes
/// <c>past_key_values.{i}.key</c> / <c>.value</c> [batch, num_kv_heads, past_sequence, head_dim] and returns
/// <c>present.{i}.key</c> / <c>.value</c> [batch, num_kv_heads, total_sequence, head_dim] in the compute type,
/// <c>attention_mask</c> spans [batch, total_sequence] and <c>position_ids</c> is an input. The names are the ones
/// Hugging Face Optimum's decoder export uses (exporters/onnx: <c>past_key_values.{i}.key</c>,
/// <c>present.{i}.key</c>, dims <c>past_sequence_length</c>) and the defaults ONNX Runtime GenAI reads
/// (src/models: <c>past_key_values.%d.key</c>, <c>present.%d.key</c>). An empty past (past_sequence 0) is the
/// first step, so one graph serves prefill and decode.
/// </remarks>
public sealed partial class LlamaForCausalLM : IOnnxExportableDecoder
{
    /// <summary>The name of layer <paramref name="layer"/>'s cached key input (Optimum / ONNX Runtime GenAI).</summary>
    public static string PastKeyName(int layer) => $"past_key_values.{layer}.key";

    /// <summary>The name of layer <paramref name="layer"/>'s cached value input (Optimum / ONNX Runtime GenAI).</summary>
    public static string PastValueName(int layer) => $"past_key_values.{layer}.value";

    /// <summary>The name of layer <paramref name="layer"/>'s updated key output (Optimum / ONNX Runtime GenAI).</summary>
    public static string PresentKeyName(int layer) => $"present.{layer}.key";

    /// <summary>The name of layer <paramref name="layer"/>'s updated value output (Optimum / ONNX Runtime GenAI).</summary>
    public static string PresentValueName(int layer) => $"present.{layer}.value";

    int IOnnxExportableDecoder.LayerCount => Config.NumHiddenLayers;

    int IOnnxExportableDecoder.KeyValueHeadCount => Config.NumKeyValueHeads;

    int IOnnxExportableDecoder.HeadSize => Config.HeadDim;

    public void EmitOnnxGraph(OnnxEmitContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var builder = context.Builder;
        bool usePast = context.Options.UsePast;
        string ids = builder.AddInput("input_ids", DType.I64, "batch", "sequence");
        string mask = builder.AddInput("attention_mask", DType.I64, "batch", usePast ? "total_sequence" : "sequence");
        string? positions = context.Options.PositionIdsInput || usePast ? builder.AddInput("position_ids", DType.I64, "batch", "sequence") : null;
        List<OnnxKeyValue>? past = null;
        if (usePast)
        {
            past = [.. Enumerable.Range(0, Config.NumHiddenLayers).Select(i => new OnnxKeyValue(
                builder.AddInput(PastKeyName(i), context.ComputeType, "batch", Config.NumKeyValueHeads, "past_sequence", Config.HeadDim),
                builder.AddInput(PastValueName(i), context.ComputeType, "batch", Config.NumKeyValueHeads, "past_sequence", Config.HeadDim)))];
        }
        var (hidden, present) = Model.EmitOnnx(context.Child("model"), ids, mask, positions, past);
        string logits = context.ToFloat32(context.Emit(LmHead, "lm_head", hidden));
        builder.AddNode("Identity", [logits], ["logits"], "/logits/Identity");
        builder.AddOutput("logits", DType.F32, "batch", "sequence", Config.VocabSize);
        for (int i = 0; i < present.Count; i++)
        {
            builder.AddNode("Identity", [present[i].Key], [PresentKeyName(i)], $"/present.{i}.key/Identity");
            builder.AddNode("Identity", [present[i].Value], [PresentValueName(i)], $"/present.{i}.value/Identity");
            builder.AddOutput(PresentKeyName(i), context.ComputeType, "batch", Config.NumKeyValueHeads, "total_sequence", Config.HeadDim);
            builder.AddOutput(PresentValueName(i), context.ComputeType, "batch", Config.NumKeyValueHeads, "total_sequence", Config.HeadDim);
        }
    }
}
