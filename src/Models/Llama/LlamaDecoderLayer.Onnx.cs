using OnnxLora.Models.Onnx;

namespace OnnxLora.Models.Llama;

/// <summary>ONNX emission of one pre-norm block: h + attn(norm(h)), then + mlp(norm(h)).</summary>
public sealed partial class LlamaDecoderLayer
{
    internal string EmitOnnx(OnnxEmitContext context, string hidden, string cos, string sin, string mask)
    {
        string normed = context.Emit(InputLayernorm, "input_layernorm", hidden);
        string attention = SelfAttn.EmitOnnx(context.Child("self_attn"), normed, cos, sin, mask);
        string h = context.Op("Add", hidden, attention);
        string mlp = context.Emit(Mlp, "mlp", context.Emit(PostAttentionLayernorm, "post_attention_layernorm", h));
        return context.Op("Add", h, mlp);
    }
}
