using OnnxLora.Models.Onnx;

namespace OnnxLora.Models.Llama;

/// <summary>ONNX emission: <c>down_proj(SiLU(gate_proj(x)) · up_proj(x))</c>, SiLU as x·Sigmoid(x).</summary>
public sealed partial class LlamaMlp : IOnnxExportable
{
    public string EmitOnnx(OnnxEmitContext context, string input)
    {
        ArgumentNullException.ThrowIfNull(context);
        string gate = context.Silu(context.Emit(GateProj, "gate_proj", input));
        string up = context.Emit(UpProj, "up_proj", input);
        return context.Emit(DownProj, "down_proj", context.Op("Mul", gate, up));
    }
}
