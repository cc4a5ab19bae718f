namespace OnnxLora.Core.Peft;

/// <summary>
/// The update one adapter makes to one module's weight, as fp32 factors: the single place where the
/// pieces around ΔW are composed (factor order, the transposed layouts of fan_in_fan_out and
/// embedding weights, DoRA's normalisation after the additive update). Every target goes through it:
/// safetensors and ONNX merges read it from a <see cref="PeftAdapter"/> (<see cref="Read"/>), the
/// TorchSharp LoRA layers build it from their parameters (<see cref="Lora"/>, <see cref="LoraEmbedding"/>),
/// the way PEFT's layers call <c>get_delta_weight</c> from <c>merge</c>/<c>unmerge</c>.
/// </summary>
/// <remarks>
/// ΔW = s·B·A (LoRA; s from <see cref="PeftAdapterConfig.Scaling(double, int, bool)"/>), s·(B·A)ᵀ for
/// embeddings, s·(w1a·w1b) ⊙ (w2a·w2b) (LoHa), s·kron(w1, w2) (LoKr), and DoRA's
/// W' = m ⊙ (W + ΔW) / ‖W + ΔW‖ with the norm over each output row. Sums run in fp64
/// (<see cref="DeltaMath"/>) and each element is rounded to fp32 once.
/// </remarks>
public sealed class ModuleUpdate
{
    private readonly IReadOnlyDictionary<AdapterTensorRole, Factor> _factors;

    private ModuleUpdate(string modulePath, AdapterModuleKind kind, int rank, double scaling, int inFeatures, int outFeatures,
        bool weightIsTransposed, IReadOnlyDictionary<AdapterTensorRole, Factor> factors)
    {
        ModulePath = modulePath;
        Kind = kind;
        Rank = rank;
        Scaling = scaling;
        InFeatures = inFeatures;
        OutFeatures = outFeatures;
        WeightIsTransposed = weightIsTransposed;
        _factors = factors;
    }

    /// <summary>A row-major fp32 factor and its shape.</summary>
    private readonly record struct Factor(float[] Values, int Rows, int Cols);

    /// <summary>The module's path in the base model (used in messages).</summary>
    public string ModulePath { get; }

    public AdapterModuleKind Kind { get; }

    public int Rank { get; }

    /// <summary>s, applied to the product of the factors.</summary>
    public double Scaling { get; }

    /// <summary>Columns of ΔW in [out, in] orientation (num_embeddings for an embedding).</summary>
    public int InFeatures { get; }

    /// <summary>Rows of ΔW in [out, in] orientation (embedding_dim for an embedding).</summary>
    public int OutFeatures { get; }

    /// <summary>The base weight is stored [in, out] (fan_in_fan_out, embeddings).</summary>
    public bool WeightIsTransposed { get; }

    /// <summary>True when the update carries a DoRA magnitude vector (not additive).</summary>
    public bool IsDora => _factors.ContainsKey(AdapterTensorRole.Magnitude);

    /// <summary>Number of elements of the base weight.</summary>
    public long WeightLength => (long)InFeatures * OutFeatures;

    /// <summary>A LoRA (or DoRA, with <paramref name="magnitude"/>) update on a linear weight: A [r, in], B [out, r], m [out].</summary>
    public static ModuleUpdate Lora(string modulePath, float[] a, float[] b, float[]? magnitude, int rank, double scaling,
        int inFeatures, int outFeatures, bool fanInFanOut = false)
    {
        var factors = new Dictionary<AdapterTensorRole, Factor>
        {
            [AdapterTensorRole.LoraA] = Checked(modulePath, "lora_A", a, rank, inFeatures),
            [AdapterTensorRole.LoraB] = Checked(modulePath, "lora_B", b, outFeatures, rank),
        };
        if (magnitude is not null)
        {
            factors[AdapterTensorRole.Magnitude] = Checked(modulePath, "lora_magnitude_vector", magnitude, 1, outFeatures);
        }
        return new ModuleUpdate(modulePath, AdapterModuleKind.Lora, rank, scaling, inFeatures, outFeatures, fanInFanOut, factors);
    }

    /// <summary>A LoRA update on an embedding weight [num_embeddings, dim]: A [r, num_embeddings], B [dim, r].</summary>
    public static ModuleUpdate LoraEmbedding(string modulePath, float[] a, float[] b, int rank, double scaling, int numEmbeddings, int embeddingDim) =>
        new(modulePath, AdapterModuleKind.LoraEmbedding, rank, scaling, numEmbeddings, embeddingDim, weightIsTransposed: true,
            new Dictionary<AdapterTensorRole, Factor>
            {
                [AdapterTensorRole.LoraA] = Checked(modulePath, "lora_embedding_A", a, rank, numEmbeddings),
                [AdapterTensorRole.LoraB] = Checked(modulePath, "lora_embedding_B", b, embeddingDim, rank),
            });

    /// <summary>The update of <paramref name="module"/>, its factors read from <paramref name="adapter"/>'s file as fp32.</summary>
    public static ModuleUpdate Read(PeftAdapter adapter, AdapterModule module)
    {
        ArgumentNullException.ThrowIfNull(adapter);
        ArgumentNullException.ThrowIfNull(module);
        var factors = module.Tensors.ToDictionary(t => t.Key, t =>
        {
            var shape = t.Value.Shape;
            return new Factor(adapter.Weights.ReadSingles(t.Value), shape.Count == 2 ? checked((int)shape[0]) : 1, checked((int)shape[^1]));
        });
        return new ModuleUpdate(module.ModulePath, module.Kind, module.Rank, module.Scaling, module.InFeatures, module.OutFeatures,
            module.WeightIsTransposed, factors);
    }

    /// <summary>ΔW as row-major fp32, [out, in] or (<paramref name="storedLayout"/>) in the base weight's layout.</summary>
    /// <exception cref="InvalidOperationException">The update is DoRA: it depends on the base weight (use <see cref="TaskTensor"/>).</exception>
    public float[] Delta(bool storedLayout = false)
    {
        if (IsDora)
        {
            throw new InvalidOperationException($"module '{ModulePath}' is DoRA; its update depends on the base weight, so use TaskTensor or MergeInto with the weight.");
        }
        var delta = new float[checked(InFeatures * OutFeatures)];
        AddDelta(delta, storedLayout && WeightIsTransposed, 1.0);
        return delta;
    }

    /// <summary>
    /// Merges into the base weight in place (stored layout; its transpose when <paramref name="transposed"/>): W ← W +
    /// w·(W_merged − W). For additive kinds that is W + w·ΔW; for DoRA W_merged = m ⊙ (W + ΔW)/‖W + ΔW‖, so w = 1 gives
    /// exactly that. Every element gets the same operations in either layout, so the two give the same bits.
    /// </summary>
    public void MergeInto(Span<float> weight, double adapterWeight = 1.0, bool transposed = false)
    {
        CheckWeight(weight.Length);
        bool layout = WeightIsTransposed ^ transposed;
        if (!IsDora)
        {
            AddDelta(weight, layout, adapterWeight);
            return;
        }
        if (adapterWeight == 1.0)
        {
            // The DoRA weight itself, rounded once (not W + (DoRA(W) − W), which rounds twice).
            var delta = new float[weight.Length];
            AddDelta(delta, layout, 1.0);
            DeltaMath.ApplyDora(weight, delta, _factors[AdapterTensorRole.Magnitude].Values, OutFeatures, InFeatures, layout);
            return;
        }
        var task = TaskTensor(weight, transposed);
        for (int i = 0; i < weight.Length; i++)
        {
            weight[i] = (float)(weight[i] + adapterWeight * task[i]);
        }
    }

    /// <summary>True when lora_B carries a bias (lora_bias), which a merge adds to the base layer's bias.</summary>
    public bool HasBias => _factors.ContainsKey(AdapterTensorRole.LoraBias);

    /// <summary>
    /// Adds w·s·b (lora_B's bias b, lora_bias) to the base layer's bias in place, fp64 then rounded once:
    /// PEFT's <c>Linear.merge</c> does <c>bias += lora_B.bias * scaling</c>. Nothing when the module has no bias.
    /// </summary>
    public void MergeBiasInto(Span<float> bias, double adapterWeight = 1.0)
    {
        if (!_factors.TryGetValue(AdapterTensorRole.LoraBias, out var b))
        {
            return;
        }
        if (bias.Length != OutFeatures)
        {
            throw new ArgumentException($"module '{ModulePath}': bias has {bias.Length} values, expected {OutFeatures}.");
        }
        double f = adapterWeight * Scaling;
        for (int i = 0; i < bias.Length; i++)
        {
            bias[i] = (float)(bias[i] + f * b.Values[i]);
        }
    }

    /// <summary>Undoes <see cref="MergeInto"/> for additive kinds: W ← W − w·ΔW.</summary>
    /// <exception cref="InvalidOperationException">DoRA: the base row norms are not recoverable from the merged weight.</exception>
    public void UnmergeFrom(Span<float> weight, double adapterWeight = 1.0)
    {
        CheckWeight(weight.Length);
        if (IsDora)
        {
            throw new InvalidOperationException($"module '{ModulePath}' is DoRA; a DoRA merge cannot be undone from the merged weight alone (the base row norms are lost).");
        }
        AddDelta(weight, WeightIsTransposed, -adapterWeight);
    }

    /// <summary>
    /// The task tensor τ = W_merged − W in stored layout (its transpose when <paramref name="transposed"/>): ΔW for additive
    /// kinds, DoRA(W) − W for DoRA.
    /// </summary>
    public float[] TaskTensor(ReadOnlySpan<float> baseWeight, bool transposed = false)
    {
        CheckWeight(baseWeight.Length);
        bool layout = WeightIsTransposed ^ transposed;
        var delta = new float[baseWeight.Length];
        AddDelta(delta, layout, 1.0);
        if (!IsDora)
        {
            return delta;
        }
        var merged = baseWeight.ToArray();
        DeltaMath.ApplyDora(merged, delta, _factors[AdapterTensorRole.Magnitude].Values, OutFeatures, InFeatures, layout);
        for (int i = 0; i < merged.Length; i++)
        {
            delta[i] = (float)((double)merged[i] - baseWeight[i]);
        }
        return delta;
    }

    /// <summary>dst += factor·ΔW (DoRA's magnitude not applied), dst in [out, in] or (transposed) [in, out].</summary>
    private void AddDelta(Span<float> dst, bool transposed, double factor)
    {
        int outF = OutFeatures, inF = InFeatures, r = Rank;
        int rows = transposed ? inF : outF, cols = transposed ? outF : inF;
        double s = factor * Scaling;
        switch (Kind)
        {
            case AdapterModuleKind.Lora:
            case AdapterModuleKind.LoraEmbedding:
                LoraProduct(transposed, s).Add(dst);
                break;
            case AdapterModuleKind.LoHa:
                {
                    var w1a = Values(AdapterTensorRole.HadaW1A);
                    var w1b = Values(AdapterTensorRole.HadaW1B);
                    var w2a = Values(AdapterTensorRole.HadaW2A);
                    var w2b = Values(AdapterTensorRole.HadaW2B);
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
                    var w1 = LoKrFactor(AdapterTensorRole.LokrW1, AdapterTensorRole.LokrW1A, AdapterTensorRole.LokrW1B);
                    var w2 = LoKrFactor(AdapterTensorRole.LokrW2, AdapterTensorRole.LokrW2A, AdapterTensorRole.LokrW2B);
                    if (transposed)
                    {
                        DeltaMath.AddKronecker(dst, DeltaMath.Transpose(w1.Values, w1.Rows, w1.Cols), w1.Cols, w1.Rows,
                            DeltaMath.Transpose(w2.Values, w2.Rows, w2.Cols), w2.Cols, w2.Rows, s);
                    }
                    else
                    {
                        DeltaMath.AddKronecker(dst, w1.Values, w1.Rows, w1.Cols, w2.Values, w2.Rows, w2.Cols, s);
                    }
                    break;
                }
        }
    }

    /// <summary>s·B·A in [out, in], or (transposed) s·(B·A)ᵀ = s·Aᵀ·Bᵀ in [in, out], prepared for adding.</summary>
    private DeltaMath.Product LoraProduct(bool transposed, double s)
    {
        int outF = OutFeatures, inF = InFeatures, r = Rank;
        var a = Values(AdapterTensorRole.LoraA);
        var b = Values(AdapterTensorRole.LoraB);
        return transposed
            ? new DeltaMath.Product(DeltaMath.Transpose(a, r, inF), DeltaMath.Transpose(b, outF, r), inF, outF, r, s)
            : new DeltaMath.Product(b, a, outF, inF, r, s);
    }

    /// <summary>
    /// <see cref="MergeInto"/> as a <see cref="Peft.RowUpdate"/> (row blocks of the stored layout, or of its transpose when
    /// <paramref name="transposed"/>), the same bits; null for the kinds whose update is not formed row by row here (DoRA,
    /// LoHa, LoKr: those merge whole tensors).
    /// </summary>
    public RowUpdate? RowUpdate(double adapterWeight = 1.0, bool transposed = false) =>
        IsDora || Kind is not (AdapterModuleKind.Lora or AdapterModuleKind.LoraEmbedding)
            ? null
            : new RowUpdate([LoraProduct(WeightIsTransposed ^ transposed, adapterWeight * Scaling)]);

    /// <summary>LoKr's w1 (or w2): stored whole, or as the product of its two low-rank factors.</summary>
    private Factor LoKrFactor(AdapterTensorRole full, AdapterTensorRole left, AdapterTensorRole right)
    {
        if (_factors.TryGetValue(full, out var whole))
        {
            return whole;
        }
        var l = Get(left);
        var rt = Get(right);
        return new Factor(DeltaMath.MatMul(l.Values, rt.Values, l.Rows, l.Cols, rt.Cols), l.Rows, rt.Cols);
    }

    private float[] Values(AdapterTensorRole role) => Get(role).Values;

    private Factor Get(AdapterTensorRole role) =>
        _factors.TryGetValue(role, out var f) ? f : throw new InvalidOperationException($"module '{ModulePath}' has no {role} factor.");

    private static Factor Checked(string modulePath, string name, float[] values, int rows, int cols)
    {
        ArgumentNullException.ThrowIfNull(values);
        if (values.Length != (long)rows * cols)
        {
            throw new ArgumentException($"module '{modulePath}': {name} has {values.Length} values, expected {(long)rows * cols} for [{rows}, {cols}].");
        }
        return new Factor(values, rows, cols);
    }

    private void CheckWeight(int length)
    {
        if (length != WeightLength)
        {
            string shape = WeightIsTransposed ? $"[{InFeatures}, {OutFeatures}]" : $"[{OutFeatures}, {InFeatures}]";
            throw new ArgumentException($"module '{ModulePath}': weight has {length} values, expected {WeightLength} for shape {shape}.");
        }
    }
}
