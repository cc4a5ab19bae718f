using OnnxLora.Models.Onnx;

namespace OnnxLora.Models.Bert;

/// <summary>
/// ONNX emission of the encoder: embeddings, the additive key mask and the block stack, and the pooler.
/// Which graph inputs and outputs a BertModel export has is <see cref="BertOnnxConfig"/>'s decision
/// (feature extraction: <c>last_hidden_state</c> and, with a pooler, <c>pooler_output</c>).
/// </summary>
public sealed partial class BertModel : IOnnxExportableModel
{
    public void EmitOnnxGraph(OnnxEmitContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var inputs = BertOnnxConfig.DeclareInputs(context, Config);
        string hidden = EmitEncoder(context, inputs);
        BertOnnxConfig.DeclareOutput(context, BertOnnxConfig.LastHiddenState, hidden, "batch", "sequence", Config.HiddenSize);
        if (Pooler is not null)
        {
            BertOnnxConfig.DeclareOutput(context, BertOnnxConfig.PoolerOutput, context.Emit(Pooler, "pooler", hidden), "batch", Config.HiddenSize);
        }
    }

    /// <summary>last_hidden_state [batch, sequence, hidden] in the compute type; <paramref name="context"/> is scoped to this model's path.</summary>
    internal string EmitEncoder(OnnxEmitContext context, BertOnnxInputs inputs)
    {
        string hidden = Embeddings.EmitOnnx(context.Child("embeddings"), inputs.InputIds, inputs.TokenTypeIds);
        // The additive key mask [batch, 1, 1, sequence] in fp32: 0 for tokens, float.MinValue for padding.
        string keep = context.Unsqueeze(context.Cast(inputs.AttentionMask, Core.DType.Bool), 1, 2);
        string mask = context.AdditiveMask(keep);
        return Encoder.EmitOnnx(context.Child("encoder"), hidden, mask);
    }

    /// <summary>The pooled [CLS] state the classification heads read: pooler_output, or h[:, 0] without a pooler.</summary>
    internal string EmitPooled(OnnxEmitContext context, string hidden) =>
        Pooler is null ? BertPooler.EmitFirstToken(context, hidden) : context.Emit(Pooler, "pooler", hidden);
}

/// <summary>ONNX emission of <c>pooler</c>: tanh(dense(h[:, 0])).</summary>
public sealed partial class BertPooler : IOnnxExportable
{
    public string EmitOnnx(OnnxEmitContext context, string input)
    {
        ArgumentNullException.ThrowIfNull(context);
        return context.Op("Tanh", context.Emit(Dense, "dense", EmitFirstToken(context, input)));
    }

    /// <summary>h[:, 0]: [batch, sequence, hidden] → [batch, hidden].</summary>
    internal static string EmitFirstToken(OnnxEmitContext context, string hidden) =>
        context.Op("Gather", [hidden, context.Int64Scalar(0)], Core.Onnx.OnnxAttributes.Int("axis", 1));
}
