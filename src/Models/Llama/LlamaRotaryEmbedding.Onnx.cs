using OnnxLora.Core.Onnx;
using OnnxLora.Models.Onnx;

namespace OnnxLora.Models.Llama;

/// <summary>
/// ONNX emission of rotary embeddings: cos and sin tables [max_position_embeddings, d] are
/// precomputed (angles p·inv_freq in fp32, as <see cref="forward"/> computes them) and stored as the
/// initializers <c>model.rotary_emb.cos_cached</c> / <c>sin_cached</c> in the compute type; the graph
/// gathers them by position id.
/// </summary>
public sealed partial class LlamaRotaryEmbedding
{
    /// <summary>cos and sin [batch or 1, 1, sequence, d] for <paramref name="positionIds"/> [batch or 1, sequence].</summary>
    internal (string Cos, string Sin) EmitOnnx(OnnxEmitContext context, string positionIds, int maxPositions)
    {
        int d = HeadDim, half = d / 2;
        float[] cos = new float[(long)maxPositions * d];
        float[] sin = new float[cos.Length];
        for (int p = 0; p < maxPositions; p++)
        {
            for (int i = 0; i < half; i++)
            {
                float angle = p * InverseFrequencies[i];
                float c = (float)Math.Cos(angle), s = (float)Math.Sin(angle);
                cos[(p * d) + i] = cos[(p * d) + i + half] = c;
                sin[(p * d) + i] = sin[(p * d) + i + half] = s;
            }
        }
        string cosTable = context.FloatInitializer(context.ParameterName("cos_cached"), [maxPositions, d], cos);
        string sinTable = context.FloatInitializer(context.ParameterName("sin_cached"), [maxPositions, d], sin);
        var axis = OnnxAttributes.Int("axis", 0);
        return (context.Unsqueeze(context.Op("Gather", [cosTable, positionIds], axis), 1),
                context.Unsqueeze(context.Op("Gather", [sinTable, positionIds], axis), 1));
    }

    /// <summary><c>x·cos + rotate_half(x)·sin</c> for x [batch, heads, sequence, d].</summary>
    internal static string EmitApply(OnnxEmitContext context, string x, string cos, string sin, int headDim)
    {
        int half = headDim / 2;
        string x1 = context.Slice(x, 0, half, 3);
        string x2 = context.Slice(x, half, headDim, 3);
        string rotated = context.Op("Concat", [context.Op("Neg", x2), x1], OnnxAttributes.Int("axis", -1));
        return context.Op("Add", context.Op("Mul", x, cos), context.Op("Mul", rotated, sin));
    }
}
