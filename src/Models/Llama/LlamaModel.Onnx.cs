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
    /// final normed hidden states [batch, sequence, hidden] and, with <paramref name="past"/> (one entry per
    /// layer), each layer's present key and value. <paramref name="positionIds"/> may be null for the positions
    /// past..total−1 (0..sequence−1 without a past), as <see cref="forward(TorchSharp.torch.Tensor, TorchSharp.torch.Tensor?, TorchSharp.torch.Tensor?, KeyValueCache?)"/> does.
    /// </summary>
    /// <remarks>
    /// With a past, <paramref name="attentionMask"/> spans the total sequence (past + new tokens) and the new
    /// tokens are its last <c>sequence</c> positions: query i (at total position past + i) may attend key j when
    /// j ≤ past + i and key j is not padding.
    /// </remarks>
    internal (string Hidden, IReadOnlyList<OnnxKeyValue> Present) EmitOnnx(OnnxEmitContext context, string inputIds, string attentionMask, string? positionIds,
        IReadOnlyList<OnnxKeyValue>? past = null)
    {
        string sequence = SequenceLength(context, inputIds);
        string keyIndex, queryIndex;
        if (past is null)
        {
            keyIndex = queryIndex = context.Op("Range", context.Int64Scalar(0), sequence, context.Int64Scalar(1));
        }
        else
        {
            string total = SequenceLength(context, attentionMask);
            keyIndex = context.Op("Range", context.Int64Scalar(0), total, context.Int64Scalar(1));
            queryIndex = context.Op("Range", context.Op("Sub", total, sequence), total, context.Int64Scalar(1));
        }
        positionIds ??= context.Unsqueeze(queryIndex, 0);
        var (cos, sin) = RotaryEmb.EmitOnnx(context.Child("rotary_emb"), positionIds, Config.MaxPositionEmbeddings);
        string mask = EmitAttentionMask(context, queryIndex, keyIndex, attentionMask, Config.SlidingWindow);
        string h = context.Emit(EmbedTokens, "embed_tokens", inputIds);
        var present = new List<OnnxKeyValue>();
        for (int i = 0; i < Layers.Count; i++)
        {
            (h, var layerPresent) = Layers[i].EmitOnnx(context.Child($"layers.{i}"), h, cos, sin, mask, past?[i]);
            if (layerPresent is not null)
            {
                present.Add(layerPresent);
            }
        }
        return (Norm.EmitOnnx(context.Child("norm"), h), present);
    }

    /// <summary>The length of axis 1 of [batch, length] <paramref name="value"/> as an int64 scalar.</summary>
    private static string SequenceLength(OnnxEmitContext context, string value) =>
        context.Op("Squeeze", context.Op("Shape", [value], OnnxAttributes.Int("start", 1), OnnxAttributes.Int("end", 2)), context.Int64s(0));

    /// <summary>
    /// The fp32 additive mask [batch, 1, sequence, keys], as <see cref="BuildAttentionMask"/>: 0 where key
    /// position j ≤ query position i, the key is not padding (and i − j &lt; window), float.MinValue elsewhere.
    /// </summary>
    private static string EmitAttentionMask(OnnxEmitContext context, string queryIndex, string keyIndex, string attentionMask, int? slidingWindow)
    {
        string query = context.Unsqueeze(queryIndex, 1);
        string key = context.Unsqueeze(keyIndex, 0);
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
