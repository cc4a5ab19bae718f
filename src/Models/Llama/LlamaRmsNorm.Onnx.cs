using OnnxLora.Models.Onnx;

namespace OnnxLora.Models.Llama;

/// <summary>ONNX emission: <see cref="OnnxEmitContext.RmsNorm"/> (fp32 Pow/ReduceMean/Add/Sqrt/Div, cast, Mul by <c>weight</c>).</summary>
public sealed partial class LlamaRmsNorm : IOnnxExportable
{
    public string EmitOnnx(OnnxEmitContext context, string input)
    {
        ArgumentNullException.ThrowIfNull(context);
        return context.RmsNorm(input, Weight, Eps);
    }
}
