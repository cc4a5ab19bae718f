using OnnxLora.Models.Onnx;

namespace OnnxLora.Models.Bert;

/// <summary>ONNX emission: heads of query/key/value, <see cref="OnnxEmitContext.Attention"/> with the key mask, heads merged.</summary>
public sealed partial class BertSelfAttention
{
    internal string EmitOnnx(OnnxEmitContext context, string hidden, string mask)
    {
        string q = context.SplitHeads(context.Emit(Query, "query", hidden), NumHeads, HeadDim);
        string k = context.SplitHeads(context.Emit(Key, "key", hidden), NumHeads, HeadDim);
        string v = context.SplitHeads(context.Emit(Value, "value", hidden), NumHeads, HeadDim);
        string attended = context.Attention(q, k, v, mask, 1.0 / Math.Sqrt(HeadDim));
        return context.MergeHeads(attended, (long)NumHeads * HeadDim);
    }
}
