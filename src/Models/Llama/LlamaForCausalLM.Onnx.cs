using OnnxLora.Core;
using OnnxLora.Models.Onnx;

namespace OnnxLora.Models.Llama;

/// <summary>
/// ONNX emission of the whole causal LM. Inputs: <c>input_ids</c> and <c>attention_mask</c> (int64
/// [batch, sequence]) and, when asked for, <c>position_ids</c>; output: <c>logits</c> (fp32
/// [batch, sequence, vocab], cast from fp16 in an fp16 export). A tied LM head reuses
/// <c>model.embed_tokens.weight</c> through a Transpose node.
/// </summary>
public sealed partial class LlamaForCausalLM : IOnnxExportableModel
{
    public void EmitOnnxGraph(OnnxEmitContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var builder = context.Builder;
        string ids = builder.AddInput("input_ids", DType.I64, "batch", "sequence");
        string mask = builder.AddInput("attention_mask", DType.I64, "batch", "sequence");
        string? positions = context.Options.PositionIdsInput ? builder.AddInput("position_ids", DType.I64, "batch", "sequence") : null;
        string hidden = Model.EmitOnnx(context.Child("model"), ids, mask, positions);
        string logits = context.ToFloat32(context.Emit(LmHead, "lm_head", hidden));
        builder.AddNode("Identity", [logits], ["logits"], "/logits/Identity");
        builder.AddOutput("logits", DType.F32, "batch", "sequence", Config.VocabSize);
    }
}
