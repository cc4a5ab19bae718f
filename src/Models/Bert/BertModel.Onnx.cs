using OnnxLora.Core;
using OnnxLora.Models.Onnx;

namespace OnnxLora.Models.Bert;

/// <summary>
/// ONNX emission of the encoder. Inputs: <c>input_ids</c>, <c>attention_mask</c> (int64 [batch,
/// sequence]) and, when asked for, <c>token_type_ids</c> (otherwise all zeros, as <see cref="forward(TorchSharp.torch.Tensor, TorchSharp.torch.Tensor?)"/>);
/// output: <c>last_hidden_state</c> (fp32 [batch, sequence, hidden]). The pooler is not exported.
/// </summary>
public sealed partial class BertModel : IOnnxExportableModel
{
    public void EmitOnnxGraph(OnnxEmitContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var builder = context.Builder;
        string ids = builder.AddInput("input_ids", DType.I64, "batch", "sequence");
        string attentionMask = builder.AddInput("attention_mask", DType.I64, "batch", "sequence");
        string? tokenTypes = context.Options.TokenTypeIdsInput ? builder.AddInput("token_type_ids", DType.I64, "batch", "sequence") : null;
        string hidden = Embeddings.EmitOnnx(context.Child("embeddings"), ids, tokenTypes);
        // The additive key mask [batch, 1, 1, sequence] in fp32: 0 for tokens, float.MinValue for padding.
        string keep = context.Unsqueeze(context.Cast(attentionMask, DType.Bool), 1, 2);
        string mask = context.AdditiveMask(keep);
        hidden = Encoder.EmitOnnx(context.Child("encoder"), hidden, mask);
        builder.AddNode("Identity", [context.ToFloat32(hidden)], ["last_hidden_state"], "/last_hidden_state/Identity");
        builder.AddOutput("last_hidden_state", DType.F32, "batch", "sequence", Config.HiddenSize);
    }
}
