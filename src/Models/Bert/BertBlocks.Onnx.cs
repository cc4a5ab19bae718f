using OnnxLora.Models.Onnx;
using static TorchSharp.torch;

namespace OnnxLora.Models.Bert;

/// <summary>ONNX emission of <c>attention.output</c>: LayerNorm(dense(h) + residual).</summary>
public sealed partial class BertSelfOutput
{
    internal string EmitOnnx(OnnxEmitContext context, string hidden, string residual) => EmitResidual(context, Dense, LayerNorm, hidden, residual);

    /// <summary>LayerNorm(dense(hidden) + residual), shared with <see cref="BertOutput"/>.</summary>
    internal static string EmitResidual(OnnxEmitContext context, nn.Module<Tensor, Tensor> dense, TorchSharp.Modules.LayerNorm norm, string hidden, string residual)
    {
        string projected = context.Emit(dense, "dense", hidden);
        return context.Emit(norm, "LayerNorm", context.Op("Add", projected, residual));
    }
}

/// <summary>ONNX emission of <c>output</c>: LayerNorm(dense(intermediate) + residual).</summary>
public sealed partial class BertOutput
{
    internal string EmitOnnx(OnnxEmitContext context, string hidden, string residual) =>
        BertSelfOutput.EmitResidual(context, Dense, LayerNorm, hidden, residual);
}

/// <summary>ONNX emission of <c>attention</c>: self-attention, then its residual projection.</summary>
public sealed partial class BertAttention
{
    internal string EmitOnnx(OnnxEmitContext context, string hidden, string mask) =>
        Output.EmitOnnx(context.Child("output"), Self.EmitOnnx(context.Child("self"), hidden, mask), hidden);
}

/// <summary>ONNX emission of <c>intermediate</c>: exact GELU of dense (Erf below opset 20, Gelu from 20).</summary>
public sealed partial class BertIntermediate : IOnnxExportable
{
    public string EmitOnnx(OnnxEmitContext context, string input)
    {
        ArgumentNullException.ThrowIfNull(context);
        return context.Gelu(context.Emit(Dense, "dense", input));
    }
}

/// <summary>ONNX emission of one encoder block.</summary>
public sealed partial class BertLayer
{
    internal string EmitOnnx(OnnxEmitContext context, string hidden, string mask)
    {
        string attended = Attention.EmitOnnx(context.Child("attention"), hidden, mask);
        string intermediate = context.Emit(Intermediate, "intermediate", attended);
        return Output.EmitOnnx(context.Child("output"), intermediate, attended);
    }
}

/// <summary>ONNX emission of the block stack, registered as <c>layer.{i}</c>.</summary>
public sealed partial class BertEncoder
{
    internal string EmitOnnx(OnnxEmitContext context, string hidden, string mask)
    {
        for (int i = 0; i < Layer.Count; i++)
        {
            hidden = Layer[i].EmitOnnx(context.Child($"layer.{i}"), hidden, mask);
        }
        return hidden;
    }
}
