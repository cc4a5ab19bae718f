using OnnxLora.Core;
using OnnxLora.Core.Onnx;
using OnnxLora.Models.Onnx;

namespace OnnxLora.Models.Llama;

/// <summary>
/// ONNX emission of the decoder stack: embed_tokens → layers → norm, with the rotary cos/sin and the
/// additive attention mask computed once and shared by every layer.
/// </summary>
public sealed partial class LlamaModel
{
    /// <summary>
    /// Emits the stack for <paramref name="inputIds"/> and <paramref name="attentionMask"/>; returns the
    /// final normed hidden states [batch, sequence, hidden]. <paramref name="positionIds"/> may be null
    /// for 0..sequence−1 (as <see cref="forward"/> does).
    /// </summary>
    internal string EmitOnnx(OnnxEmitContext context, string inputIds, string attentionMask, string? positionIds)
    {
        string index = context.Op("Range", context.Int64Scalar(0), SequenceLength(context, inputIds), context.Int64Scalar(1));
        positionIds ??= context.Unsqueeze(index, 0);
        var (cos, sin) = RotaryEmb.EmitOnnx(context.Child("rotary_emb"), positionIds, Config.MaxPositionEmbeddings);
        string mask = EmitAttentionMask(context, index, attentionMask, Config.SlidingWindow);
        string h = context.Emit(EmbedTokens, "embed_tokens", inputIds);
        for (int i = 0; i < Layers.Count; i++)
        {
            h = Layers[i].EmitOnnx(context.Child($"layers.{i}"), h, cos, sin, mask);
        }
        return Norm.EmitOnnx(context.Child("norm"), h);
    }

    /// <summary>The sequence length of [batch, sequence] <paramref name="ids"/> as an int64 scalar.</summary>
    private static string SequenceLength(OnnxEmitContext context, string ids) =>
        context.Op("Squeeze", context.Op("Shape", [ids], OnnxAttributes.Int("start", 1), OnnxAttributes.Int("end", 2)), context.Int64s(0));

    /// <summary>
    /// The fp32 additive mask [batch, 1, sequence, sequence], as <see cref="BuildAttentionMask"/>: 0 where
    /// key j ≤ query i, the key is not padding (and i − j &lt; window), float.MinValue elsewhere.
    /// </summary>
    private static string EmitAttentionMask(OnnxEmitContext context, string index, string attentionMask, int? slidingWindow)
    {
        string query = context.Unsqueeze(index, 1);
        string key = context.Unsqueeze(index, 0);
        string allowed = context.Op("LessOrEqual", key, query);
        if (slidingWindow is int window)
        {
            allowed = context.Op("And", allowed, context.Op("Less", context.Op("Sub", query, key), context.Int64Scalar(window)));
        }
        string padding = context.Unsqueeze(context.Cast(attentionMask, DType.Bool), 1, 2);
        allowed = context.Op("And", context.Unsqueeze(allowed, 0, 1), padding);
        return context.AdditiveMask(allowed);
    }
}
