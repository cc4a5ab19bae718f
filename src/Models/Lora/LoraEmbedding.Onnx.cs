using OnnxLora.Models.Onnx;

namespace OnnxLora.Models.Lora;

/// <summary>
/// ONNX emission. Base mode (or adapter disabled): <c>Gather(E, ids)</c>. Merged: the same with
/// E' from <see cref="LoraLayer.MergedWeight"/> (Core's <see cref="Core.Peft.ModuleUpdate"/>) under the base weight's name. Unmerged:
/// <c>Gather(E, ids) + s·MatMul(Gather(Aᵀ, ids), Bᵀ)</c> with Aᵀ [num, r] stored as
/// <c>base_model.model.&lt;path&gt;.lora_embedding_A</c> and Bᵀ [r, dim] as <c>…lora_embedding_B</c>
/// (both transposed from PEFT's layout), s as <c>…lora_scaling</c>. Adapters: Aᵀ and s·Bᵀ as graph
/// inputs of those names (rank symbolic, empty defaults), no scaling node.
/// </summary>
public sealed partial class LoraEmbedding : IOnnxExportable
{
    public string EmitOnnx(OnnxEmitContext context, string input)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (context.Mode == OnnxExportMode.Base || !AdapterEnabled)
        {
            return context.Embedding(input, Weight);
        }
        if (context.Mode == OnnxExportMode.Merged)
        {
            using var merged = MergedWeight();
            return context.Op("Gather", [context.TensorInitializer(context.ParameterName("weight"), merged), input], Core.Onnx.OnnxAttributes.Int("axis", 0));
        }
        string baseOut = context.Embedding(input, Weight);
        bool inputs = context.Mode == OnnxExportMode.Adapters;
        string aT = inputs
            ? context.LoraFactorInput(context.PeftName("lora_embedding_A"), Weight.shape[0], rankFirst: false)
            : context.ParameterInitializer(context.PeftName("lora_embedding_A"), LoraEmbeddingA, transpose: true);
        string bT = inputs
            ? context.LoraFactorInput(context.PeftName("lora_embedding_B"), Weight.shape[1], rankFirst: true)
            : context.ParameterInitializer(context.PeftName("lora_embedding_B"), LoraEmbeddingB, transpose: true);
        string a = context.Op("Gather", [aT, input], Core.Onnx.OnnxAttributes.Int("axis", 0));
        string b = context.Op("MatMul", a, bT);
        // With inputs, s is folded into B by the adapter file (Core's OnnxAdapterFile.FromPeft).
        string scaled = inputs ? b : context.Op("Mul", b, context.FloatInitializer(context.PeftName("lora_scaling"), [], [(float)Scaling]));
        return context.Op("Add", baseOut, scaled);
    }
}
