using OnnxLora.Core.Peft;

namespace OnnxLora.Core.Onnx;

public static partial class OnnxAdapterFile
{
    /// <summary>
    /// The parameters of an adapter file made from a PEFT adapter, for a graph whose LoRA factors are inputs
    /// (the adapter-ready export). For each LoRA module (linear or embedding), under its PEFT key:
    /// Aᵀ [in, r] (<c>…lora_A.weight</c> / <c>…lora_embedding_A</c>) and s·Bᵀ [r, out]
    /// (<c>…lora_B.weight</c> / <c>…lora_embedding_B</c>), with the module's scaling s (α/r, α/√r with
    /// rsLoRA, after rank/alpha patterns) folded into B in fp32 before conversion to <paramref name="dtype"/>:
    /// ONNX Runtime and GenAI feed only the factors, and s differs per adapter and per module.
    /// </summary>
    /// <exception cref="OnnxLoraException">Bad input: the adapter holds something that is not two low-rank factors, which a
    /// graph with A/B inputs cannot express (the message names the module and says why; merge such adapters instead),
    /// or <paramref name="dtype"/> is not F32 or F16.</exception>
    public static IReadOnlyList<OnnxAdapterParameter> FromPeft(PeftAdapter adapter, DType dtype = DType.F32)
    {
        ArgumentNullException.ThrowIfNull(adapter);
        if (dtype is not (DType.F32 or DType.F16))
        {
            throw OnnxLoraException.InvalidOption("adapter dtype", dtype.ToString(), "F32 or F16 (the graph's weight type)");
        }
        if (adapter.ExtraTensors.Count > 0)
        {
            var extra = adapter.ExtraTensors[0];
            throw OnnxLoraException.Invalid(adapter.Directory, $"tensor '{extra.Key}'", $"a whole-tensor replacement ({extra.Kind})",
                "only LoRA factors: an adapter file feeds low-rank A/B inputs and cannot replace a module (modules_to_save); merge this adapter instead");
        }
        var parameters = new List<OnnxAdapterParameter>(2 * adapter.Modules.Count);
        foreach (var module in adapter.Modules)
        {
            string? why = module switch
            {
                { Kind: AdapterModuleKind.LoHa } => "LoHa's update is a Hadamard product of two low-rank products, not B·A",
                { Kind: AdapterModuleKind.LoKr } => "LoKr's update is a Kronecker product, not B·A",
                { UseDora: true } => "DoRA rescales each output by m / ‖W + s·B·A‖, which depends on the base weight as well as the factors",
                { HasLoraBias: true } => "lora_bias adds s·b to the output, which the adapter-ready graph has no input for",
                _ => null,
            };
            if (why is not null)
            {
                throw OnnxLoraException.Invalid(adapter.Directory, $"module '{module.ModulePath}'", $"a {module.Kind}{(module.UseDora ? " (DoRA)" : "")} update",
                    $"plain LoRA factors: {why}; merge this adapter instead");
            }
            int inFeatures = module.InFeatures, outFeatures = module.OutFeatures, r = module.Rank;
            float[] a = adapter.ReadSingles(module, AdapterTensorRole.LoraA);
            float[] b = adapter.ReadSingles(module, AdapterTensorRole.LoraB);
            // PEFT's A is [r, in] and B is [out, r] for linear layers; lora_embedding_A is [r, num] and
            // lora_embedding_B is [dim, r], which AdapterModule reports as in = num, out = dim: one layout.
            var aT = new float[a.Length];
            Transpose(a, aT, r, inFeatures, 1.0);
            var bT = new float[b.Length];
            Transpose(b, bT, outFeatures, r, module.Scaling);
            parameters.Add(Parameter(PeftAdapter.KeyFor(module.ModulePath, module.Kind, AdapterTensorRole.LoraA), dtype, [inFeatures, r], aT));
            parameters.Add(Parameter(PeftAdapter.KeyFor(module.ModulePath, module.Kind, AdapterTensorRole.LoraB), dtype, [r, outFeatures], bT));
        }
        return parameters;
    }

    /// <summary>Writes the adapter file of a PEFT adapter (<see cref="FromPeft"/>) atomically.</summary>
    /// <inheritdoc cref="FromPeft" path="/exception"/>
    public static void WriteFromPeft(string path, PeftAdapter adapter, DType dtype = DType.F32, bool overwrite = false) =>
        Write(path, FromPeft(adapter, dtype), overwrite: overwrite);

    /// <summary>destination[j, i] = scale · source[i, j] for a row-major [rows, cols] source, rounded once to fp32.</summary>
    private static void Transpose(float[] source, float[] destination, int rows, int cols, double scale)
    {
        for (int i = 0; i < rows; i++)
        {
            for (int j = 0; j < cols; j++)
            {
                destination[((long)j * rows) + i] = (float)(scale * source[((long)i * cols) + j]);
            }
        }
    }

    private static OnnxAdapterParameter Parameter(string name, DType dtype, long[] shape, float[] values)
    {
        var bytes = new byte[values.LongLength * dtype.SizeOf()];
        FloatCodec.Encode(dtype, values, bytes);
        return new OnnxAdapterParameter(name, dtype, shape, bytes);
    }
}
