using OnnxLora.Models.Onnx;

namespace OnnxLora.Models.Llama;

/// <summary>
/// ONNX emission of grouped-query attention: q/k/v projections split into heads, rotary embeddings,
/// each k/v head repeated for its <c>heads / kv_heads</c> query heads (Unsqueeze, Expand, Reshape),
/// <see cref="OnnxEmitContext.Attention"/> (fp32 scores, mask and softmax), heads merged, o_proj.
/// </summary>
public sealed partial class LlamaAttention
{
    internal string EmitOnnx(OnnxEmitContext context, string hidden, string cos, string sin, string mask)
    {
        string q = context.SplitHeads(context.Emit(QProj, "q_proj", hidden), NumHeads, HeadDim);
        string k = context.SplitHeads(context.Emit(KProj, "k_proj", hidden), NumKeyValueHeads, HeadDim);
        string v = context.SplitHeads(context.Emit(VProj, "v_proj", hidden), NumKeyValueHeads, HeadDim);
        q = LlamaRotaryEmbedding.EmitApply(context, q, cos, sin, HeadDim);
        k = LlamaRotaryEmbedding.EmitApply(context, k, cos, sin, HeadDim);
        int groups = NumHeads / NumKeyValueHeads;
        if (groups > 1)
        {
            k = RepeatKeyValue(context, k, groups);
            v = RepeatKeyValue(context, v, groups);
        }
        string attended = context.Attention(q, k, v, mask, Scaling);
        return context.Emit(OProj, "o_proj", context.MergeHeads(attended, (long)NumHeads * HeadDim));
    }

    /// <summary>[b, kv, s, d] → [b, kv·groups, s, d], each kv head repeated for consecutive query heads (repeat_interleave).</summary>
    private string RepeatKeyValue(OnnxEmitContext context, string x, int groups)
    {
        string expanded = context.Op("Expand", context.Unsqueeze(x, 2), context.Int64s(1, 1, groups, 1, 1));
        return context.Reshape(expanded, 0, NumHeads, -1, HeadDim);
    }
}
