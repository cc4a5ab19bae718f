using OnnxLora.Core.Onnx;
using OnnxLora.Models.Onnx;

namespace OnnxLora.Models.Llama;

/// <summary>
/// ONNX emission of grouped-query attention: q/k/v projections split into heads, rotary embeddings,
/// each k/v head repeated for its <c>heads / kv_heads</c> query heads (Unsqueeze, Expand, Reshape),
/// <see cref="OnnxEmitContext.Attention"/> (fp32 scores, mask and softmax), heads merged, o_proj.
/// With a past, the new keys (after the rotation) and values are appended to the cached ones along the sequence
/// axis before the heads are repeated, so the cache holds num_kv_heads heads (as Hugging Face's cache does).
/// </summary>
public sealed partial class LlamaAttention
{
    internal (string Output, OnnxKeyValue? Present) EmitOnnx(OnnxEmitContext context, string hidden, string cos, string sin, string mask, OnnxKeyValue? past = null)
    {
        string q = context.SplitHeads(context.Emit(QProj, "q_proj", hidden), NumHeads, HeadDim);
        string k = context.SplitHeads(context.Emit(KProj, "k_proj", hidden), NumKeyValueHeads, HeadDim);
        string v = context.SplitHeads(context.Emit(VProj, "v_proj", hidden), NumKeyValueHeads, HeadDim);
        q = LlamaRotaryEmbedding.EmitApply(context, q, cos, sin, HeadDim);
        k = LlamaRotaryEmbedding.EmitApply(context, k, cos, sin, HeadDim);
        OnnxKeyValue? present = null;
        if (past is not null)
        {
            var axis = OnnxAttributes.Int("axis", 2);
            k = context.Op("Concat", [past.Key, k], axis);
            v = context.Op("Concat", [past.Value, v], axis);
            present = new OnnxKeyValue(k, v);
        }
        int groups = NumHeads / NumKeyValueHeads;
        if (groups > 1)
        {
            k = RepeatKeyValue(context, k, groups);
            v = RepeatKeyValue(context, v, groups);
        }
        string attended = context.Attention(q, k, v, mask, Scaling);
        return (context.Emit(OProj, "o_proj", context.MergeHeads(attended, (long)NumHeads * HeadDim)), present);
    }

    /// <summary>[b, kv, s, d] → [b, kv·groups, s, d], each kv head repeated for consecutive query heads (repeat_interleave).</summary>
    private string RepeatKeyValue(OnnxEmitContext context, string x, int groups)
    {
        string expanded = context.Op("Expand", context.Unsqueeze(x, 2), context.Int64s(1, 1, groups, 1, 1));
        return context.Reshape(expanded, 0, NumHeads, -1, HeadDim);
    }
}
