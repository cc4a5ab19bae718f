using OnnxLora.Models.Onnx;

namespace OnnxLora.Models.Lora;

/// <summary>
/// ONNX emission. Base mode (or adapter disabled): <c>MatMul(x, Wᵀ) [+ b]</c>. Merged:
/// the same with W' from <see cref="LoraLayer.MergedWeight"/> (Core's <see cref="Core.Peft.ModuleUpdate"/>) under the base weight's name. Unmerged:
/// <c>MatMul(x, Wᵀ) + s·MatMul(MatMul(x, Aᵀ), Bᵀ) [+ b]</c> — with DoRA the sum is scaled by
/// m / ‖W + s·B·A‖ per output — where Aᵀ [in, r] is stored as
/// <c>base_model.model.&lt;path&gt;.lora_A.weight</c>, Bᵀ [r, out] as <c>…lora_B.weight</c> (both
/// transposed from PEFT's [r, in] / [out, r]), s as the scalar <c>…lora_scaling</c>, and for DoRA m as
/// <c>…lora_magnitude_vector</c> [out] and the detached row norm as <c>…lora_weight_norm</c> [out].
/// Adapters: as unmerged, with Aᵀ and s·Bᵀ as graph inputs of those names (rank symbolic, empty
/// defaults) and no scaling node; DoRA is refused.
/// </summary>
public sealed partial class LoraLinear : IOnnxExportable
{
    public string EmitOnnx(OnnxEmitContext context, string input)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (context.Mode == OnnxExportMode.Base || !AdapterEnabled)
        {
            return context.Linear(input, Weight, Bias);
        }
        string y;
        if (context.Mode == OnnxExportMode.Merged)
        {
            using var merged = MergedWeight();
            y = context.Op("MatMul", input, context.TensorInitializer(context.ParameterName("weight"), merged, transpose: true));
        }
        else
        {
            bool inputs = context.Mode == OnnxExportMode.Adapters;
            if (inputs && UseDora)
            {
                throw Onnx.Internals.OnnxEmitThrow.Unsupported(context.Path,
                    "DoRA cannot be exported with its factors as inputs (--mode adapters): its output scale m / ‖W + s·B·A‖ depends on the base weight; export it merged.");
            }
            string baseOut = context.Op("MatMul", input, context.ParameterInitializer(context.ParameterName("weight"), Weight, transpose: true));
            string aT = inputs
                ? context.LoraFactorInput(context.PeftName("lora_A.weight"), InFeatures, rankFirst: false)
                : context.ParameterInitializer(context.PeftName("lora_A.weight"), LoraA, transpose: true);
            string bT = inputs
                ? context.LoraFactorInput(context.PeftName("lora_B.weight"), OutFeatures, rankFirst: true)
                : context.ParameterInitializer(context.PeftName("lora_B.weight"), LoraB, transpose: true);
            string branch = context.Op("MatMul", context.Op("MatMul", input, aT), bT);
            // With inputs, s is folded into B by the adapter file (Core's OnnxAdapterFile.FromPeft).
            string scaled = inputs ? branch : context.Op("Mul", branch, context.FloatInitializer(context.PeftName("lora_scaling"), [], [(float)Scaling]));
            y = context.Op("Add", baseOut, scaled);
            if (UseDora)
            {
                // The norm is computed from the weights' values: the parameters', or the checkpoint's and the adapter's when the
                // model was built without weights (OnnxWeightStore).
                using var w = context.ParameterValues(context.ParameterName("weight"), Weight);
                using var a = context.ParameterValues(context.PeftName("lora_A.weight"), LoraA);
                using var b = context.ParameterValues(context.PeftName("lora_B.weight"), LoraB);
                using var norm = RowNormFp64(w, a, b, Scaling);
                string magnitude = context.ParameterInitializer(context.PeftName("lora_magnitude_vector"), Magnitude!);
                string scale = context.Op("Div", magnitude, context.TensorInitializer(context.PeftName("lora_weight_norm"), norm));
                y = context.Op("Mul", y, scale);
            }
        }
        return Bias is null ? y : context.Op("Add", y, context.ParameterInitializer(context.ParameterName("bias"), Bias));
    }
}
