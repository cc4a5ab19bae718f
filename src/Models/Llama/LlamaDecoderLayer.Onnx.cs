using OnnxLora.Models.Onnx;

namespace OnnxLora.Models.Llama;

/// <summary>ONNX emission of one pre-norm block: h + attn(norm(h)), then + mlp(norm(h)).</summary>
public sealed partial class LlamaDecoderLayer
{
    /// <summary>Emits the block; with <paramref name="past"/>, also returns the attention's present key and value.</summary>
    internal (string Hidden, OnnxKeyValue? Present) EmitOnnx(OnnxEmitContext context, string hidden, string cos, string sin, string mask, OnnxKeyValue? past = null)
    {
        string normed = context.Emit(InputLayernorm, "input_layernorm", hidden);
        var (attention, present) = SelfAttn.EmitOnnx(context.Child("self_attn"), normed, cos, sin, mask, past);
        string h = context.Op("Add", hidden, attention);
        string mlp = context.Emit(Mlp, "mlp", context.Emit(PostAttentionLayernorm, "post_attention_layernorm", h));
        return (context.Op("Add", h, mlp), present);
    }
}
