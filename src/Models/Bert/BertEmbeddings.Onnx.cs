using OnnxLora.Core.Onnx;
using OnnxLora.Models.Onnx;

namespace OnnxLora.Models.Bert;

/// <summary>ONNX emission: LayerNorm(word[ids] + position[0..sequence) + token_type[types]).</summary>
public sealed partial class BertEmbeddings
{
    /// <summary>Emits the embeddings of <paramref name="inputIds"/>; <paramref name="tokenTypeIds"/> (segment ids) may be null for all zeros.</summary>
    internal string EmitOnnx(OnnxEmitContext context, string inputIds, string? tokenTypeIds)
    {
        string length = context.Op("Squeeze", context.Op("Shape", [inputIds], OnnxAttributes.Int("start", 1), OnnxAttributes.Int("end", 2)), context.Int64s(0));
        string positions = context.Unsqueeze(context.Op("Range", context.Int64Scalar(0), length, context.Int64Scalar(1)), 0);
        string words = context.Emit(WordEmbeddings, "word_embeddings", inputIds);
        string positional = context.Emit(PositionEmbeddings, "position_embeddings", positions);
        // Without token_type_ids every token is of type 0: one row, broadcast over batch and sequence.
        string types = context.Emit(TokenTypeEmbeddings, "token_type_embeddings", tokenTypeIds ?? context.Int64Scalar(0));
        string sum = context.Op("Add", context.Op("Add", words, positional), types);
        return context.Emit(LayerNorm, "LayerNorm", sum);
    }
}
