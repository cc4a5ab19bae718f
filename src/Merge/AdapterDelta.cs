using OnnxLora.Core.Peft;

namespace OnnxLora.Merge;

/// <summary>
/// One adapter module's update as fp32 arrays, for any target (safetensors, ONNX, TorchSharp):
/// ΔW = s·B·A (LoRA, rsLoRA via s), s·(B·A)ᵀ for embeddings, (w1a·w1b) ⊙ (w2a·w2b)·alpha/r (LoHa),
/// kron(w1, w2)·alpha/r (LoKr), and DoRA's W' = m ⊙ (W + s·B·A) / ‖W + s·B·A‖ (row norms).
/// All of it is formed by <see cref="DeltaMath"/>.
/// </summary>
public static class AdapterDelta
{
    /// <summary>ΔW of a module as row-major fp32 [out, in] (B·A orientation, scaling included).</summary>
    /// <exception cref="InvalidOperationException">The module is DoRA: its update depends on the base weight; use <see cref="Apply"/>.</exception>
    public static float[] Compute(PeftAdapter adapter, string modulePath) => Compute(adapter, adapter.Get(modulePath), storedLayout: false);

    /// <summary>ΔW in the layout of the base weight (<see cref="AdapterModule.WeightShape"/>: [in, out] for fan_in_fan_out, [num, dim] for embeddings).</summary>
    public static float[] ComputeForWeight(PeftAdapter adapter, string modulePath) => Compute(adapter, adapter.Get(modulePath), storedLayout: true);

    /// <summary>ΔW of <paramref name="module"/> in [out, in] or in the stored layout.</summary>
    public static float[] Compute(PeftAdapter adapter, AdapterModule module, bool storedLayout)
    {
        if (module.UseDora)
        {
            throw new InvalidOperationException($"{adapter.Directory}: module '{module.ModulePath}' is DoRA; its update depends on the base weight, so use AdapterDelta.Apply with the weight.");
        }
        var delta = new float[checked(module.InFeatures * module.OutFeatures)];
        AddDelta(adapter, module, delta, storedLayout && module.WeightIsTransposed, 1.0);
        return delta;
    }

    /// <summary>
    /// Merges one module into its base weight in place (stored layout, fp32):
    /// W ← W + w·(W_merged − W). For LoRA/LoHa/LoKr that is W + w·ΔW; for DoRA W_merged is the
    /// DoRA weight, so w = 1 gives exactly m ⊙ (W + s·B·A) / ‖W + s·B·A‖.
    /// </summary>
    public static void Apply(PeftAdapter adapter, AdapterModule module, Span<float> weight, double adapterWeight = 1.0)
    {
        CheckWeight(module, weight.Length);
        if (!module.UseDora)
        {
            AddDelta(adapter, module, weight, module.WeightIsTransposed, adapterWeight);
            return;
        }
        var task = TaskTensor(adapter, module, weight);
        for (int i = 0; i < weight.Length; i++)
        {
            weight[i] = (float)(weight[i] + adapterWeight * task[i]);
        }
    }

    /// <summary>Undoes <see cref="Apply"/> for additive updates: W ← W − w·ΔW.</summary>
    /// <exception cref="InvalidOperationException">DoRA: the base weight's row norms are not recoverable from the merged weight.</exception>
    public static void Unapply(PeftAdapter adapter, AdapterModule module, Span<float> weight, double adapterWeight = 1.0)
    {
        CheckWeight(module, weight.Length);
        if (module.UseDora)
        {
            throw new InvalidOperationException($"{adapter.Directory}: module '{module.ModulePath}' is DoRA; a DoRA merge cannot be undone from the merged weight alone (the base row norms are lost).");
        }
        AddDelta(adapter, module, weight, module.WeightIsTransposed, -adapterWeight);
    }

    /// <summary>
    /// The task tensor τ = W_merged − W in stored layout: ΔW for additive kinds, DoRA(W) − W for DoRA.
    /// </summary>
    public static float[] TaskTensor(PeftAdapter adapter, AdapterModule module, ReadOnlySpan<float> baseWeight)
    {
        CheckWeight(module, baseWeight.Length);
        bool transposed = module.WeightIsTransposed;
        var delta = new float[baseWeight.Length];
        AddDelta(adapter, module, delta, transposed, 1.0, ignoreDora: true);
        if (!module.UseDora)
        {
            return delta;
        }
        var merged = baseWeight.ToArray();
        var magnitude = adapter.ReadSingles(module, AdapterTensorRole.Magnitude);
        DeltaMath.ApplyDora(merged, delta, magnitude, module.OutFeatures, module.InFeatures, transposed);
        for (int i = 0; i < merged.Length; i++)
        {
            delta[i] = (float)((double)merged[i] - baseWeight[i]);
        }
        return delta;
    }

    /// <summary>dst += factor·ΔW, dst in [out, in] or (transposed) [in, out].</summary>
    internal static void AddDelta(PeftAdapter adapter, AdapterModule m, Span<float> dst, bool transposed, double factor, bool ignoreDora = false)
    {
        if (m.UseDora && !ignoreDora)
        {
            throw new InvalidOperationException($"module '{m.ModulePath}' is DoRA; its update is not additive.");
        }
        int outF = m.OutFeatures, inF = m.InFeatures, r = m.Rank;
        int rows = transposed ? inF : outF, cols = transposed ? outF : inF;
        double s = factor * m.Scaling;
        switch (m.Kind)
        {
            case AdapterModuleKind.Lora:
            case AdapterModuleKind.LoraEmbedding:
                {
                    var a = adapter.ReadSingles(m, AdapterTensorRole.LoraA);
                    var b = adapter.ReadSingles(m, AdapterTensorRole.LoraB);
                    if (transposed)
                    {
                        DeltaMath.AddProduct(dst, rows, cols, DeltaMath.Transpose(a, r, inF), DeltaMath.Transpose(b, outF, r), r, s);
                    }
                    else
                    {
                        DeltaMath.AddProduct(dst, rows, cols, b, a, r, s);
                    }
                    break;
                }
            case AdapterModuleKind.LoHa:
                {
                    var w1a = adapter.ReadSingles(m, AdapterTensorRole.HadaW1A);
                    var w1b = adapter.ReadSingles(m, AdapterTensorRole.HadaW1B);
                    var w2a = adapter.ReadSingles(m, AdapterTensorRole.HadaW2A);
                    var w2b = adapter.ReadSingles(m, AdapterTensorRole.HadaW2B);
                    if (transposed)
                    {
                        DeltaMath.AddHadamardOfProducts(dst, rows, cols,
                            DeltaMath.Transpose(w1b, r, inF), DeltaMath.Transpose(w1a, outF, r), r,
                            DeltaMath.Transpose(w2b, r, inF), DeltaMath.Transpose(w2a, outF, r), r, s);
                    }
                    else
                    {
                        DeltaMath.AddHadamardOfProducts(dst, rows, cols, w1a, w1b, r, w2a, w2b, r, s);
                    }
                    break;
                }
            default:
                {
                    var (w1, a, c) = LoKrFactor(adapter, m, AdapterTensorRole.LokrW1, AdapterTensorRole.LokrW1A, AdapterTensorRole.LokrW1B);
                    var (w2, b, d) = LoKrFactor(adapter, m, AdapterTensorRole.LokrW2, AdapterTensorRole.LokrW2A, AdapterTensorRole.LokrW2B);
                    if (transposed)
                    {
                        DeltaMath.AddKronecker(dst, DeltaMath.Transpose(w1, a, c), c, a, DeltaMath.Transpose(w2, b, d), d, b, s);
                    }
                    else
                    {
                        DeltaMath.AddKronecker(dst, w1, a, c, w2, b, d, s);
                    }
                    break;
                }
        }
    }

    private static (float[] W, int Rows, int Cols) LoKrFactor(PeftAdapter adapter, AdapterModule m, AdapterTensorRole full, AdapterTensorRole left, AdapterTensorRole right)
    {
        if (m.Tensors.TryGetValue(full, out var t))
        {
            return (adapter.Weights.ReadSingles(t), (int)t.Shape[0], (int)t.Shape[1]);
        }
        var l = m[left];
        var rt = m[right];
        int rows = (int)l.Shape[0], k = (int)l.Shape[1], cols = (int)rt.Shape[1];
        return (DeltaMath.MatMul(adapter.Weights.ReadSingles(l), adapter.Weights.ReadSingles(rt), rows, k, cols), rows, cols);
    }

    private static void CheckWeight(AdapterModule module, int length)
    {
        if (length != (long)module.InFeatures * module.OutFeatures)
        {
            throw new ArgumentException($"module '{module.ModulePath}': weight has {length} values, expected {module.InFeatures * (long)module.OutFeatures} for shape [{string.Join(", ", module.WeightShape)}]");
        }
    }
}
