using OnnxLora.Core.Safetensors;

namespace OnnxLora.Core.Peft;

/// <summary>What kind of update an adapted module carries.</summary>
public enum AdapterModuleKind
{
    /// <summary>LoRA on a linear layer: lora_A [r, in], lora_B [out, r] (optionally DoRA magnitude [out]).</summary>
    Lora,

    /// <summary>LoRA on an embedding: lora_embedding_A [r, num_embeddings], lora_embedding_B [dim, r].</summary>
    LoraEmbedding,

    /// <summary>LoHa: hada_w1_a [out, r], hada_w1_b [r, in], hada_w2_a [out, r], hada_w2_b [r, in].</summary>
    LoHa,

    /// <summary>LoKr: w1 [a, c] (or w1_a [a, r]·w1_b [r, c]), w2 [b, d] (or w2_a·w2_b); out = a·b, in = c·d.</summary>
    LoKr,
}

/// <summary>The role of one adapter tensor inside its module, with PEFT's key suffix.</summary>
public enum AdapterTensorRole
{
    /// <summary>".lora_A.weight" (linear) or ".lora_embedding_A" (embedding).</summary>
    LoraA,

    /// <summary>".lora_B.weight" (linear) or ".lora_embedding_B" (embedding).</summary>
    LoraB,

    /// <summary>".lora_magnitude_vector" (DoRA).</summary>
    Magnitude,

    /// <summary>".lora_B.bias" (lora_bias: true): lora_B's bias [out], merged into the base layer's bias as s·b.</summary>
    LoraBias,

    HadaW1A,
    HadaW1B,
    HadaW2A,
    HadaW2B,
    LokrW1,
    LokrW1A,
    LokrW1B,
    LokrW2,
    LokrW2A,
    LokrW2B,
}

/// <summary>
/// One adapted module of a <see cref="PeftAdapter"/>: its path in the base model, its tensors and
/// the rank, alpha and scaling that apply to it (after rank_pattern / alpha_pattern).
/// </summary>
public sealed class AdapterModule
{
    internal AdapterModule(string modulePath, AdapterModuleKind kind, int rank, double alpha, double scaling,
        int inFeatures, int outFeatures, bool fanInFanOut, IReadOnlyDictionary<AdapterTensorRole, TensorInfo> tensors)
    {
        ModulePath = modulePath;
        Kind = kind;
        Rank = rank;
        Alpha = alpha;
        Scaling = scaling;
        InFeatures = inFeatures;
        OutFeatures = outFeatures;
        FanInFanOut = fanInFanOut;
        Tensors = tensors;
    }

    /// <summary>The module's path in the base model (e.g. "model.layers.0.self_attn.q_proj"), without "base_model.model.".</summary>
    public string ModulePath { get; }

    public AdapterModuleKind Kind { get; }

    /// <summary>The rank that applies to this module (rank_pattern, else r).</summary>
    public int Rank { get; }

    /// <summary>The alpha that applies to this module (alpha_pattern, else lora_alpha / alpha).</summary>
    public double Alpha { get; }

    /// <summary>s: alpha/r, or alpha/√r with use_rslora.</summary>
    public double Scaling { get; }

    /// <summary>Columns of ΔW in [out, in] orientation (num_embeddings for an embedding).</summary>
    public int InFeatures { get; }

    /// <summary>Rows of ΔW in [out, in] orientation (embedding_dim for an embedding).</summary>
    public int OutFeatures { get; }

    /// <summary>The base weight is stored [in, out] (config fan_in_fan_out, linear LoRA only).</summary>
    public bool FanInFanOut { get; }

    /// <summary>True when this module carries a DoRA magnitude vector.</summary>
    public bool UseDora => Tensors.ContainsKey(AdapterTensorRole.Magnitude);

    /// <summary>True when lora_B carries a bias (config lora_bias), added to the base layer's bias when merged.</summary>
    public bool HasLoraBias => Tensors.ContainsKey(AdapterTensorRole.LoraBias);

    /// <summary>The base layer's bias name relative to the model: ModulePath + ".bias".</summary>
    public string BiasName => ModulePath + ".bias";

    /// <summary>
    /// This module with fan_in_fan_out set to <paramref name="fanInFanOut"/> (linear LoRA only): a merge
    /// decides it by the target layer's type, as PEFT does, whatever the config says.
    /// </summary>
    public AdapterModule WithFanInFanOut(bool fanInFanOut)
    {
        if (fanInFanOut == FanInFanOut)
        {
            return this;
        }
        if (Kind != AdapterModuleKind.Lora)
        {
            throw new InvalidOperationException($"module '{ModulePath}' is {Kind}; fan_in_fan_out applies to linear LoRA modules only.");
        }
        return new AdapterModule(ModulePath, Kind, Rank, Alpha, Scaling, InFeatures, OutFeatures, fanInFanOut, Tensors);
    }

    /// <summary>
    /// True when the base weight is stored transposed relative to ΔW = B·A's [out, in]: with
    /// fan_in_fan_out, and for embeddings (weight [num_embeddings, dim]).
    /// </summary>
    public bool WeightIsTransposed => FanInFanOut || Kind == AdapterModuleKind.LoraEmbedding;

    /// <summary>The shape of the base weight this module updates.</summary>
    public IReadOnlyList<long> WeightShape => WeightIsTransposed ? [InFeatures, OutFeatures] : [OutFeatures, InFeatures];

    /// <summary>The base weight's parameter name relative to the model: ModulePath + ".weight".</summary>
    public string WeightName => ModulePath + ".weight";

    /// <summary>The module's tensors by role.</summary>
    public IReadOnlyDictionary<AdapterTensorRole, TensorInfo> Tensors { get; }

    /// <summary>The tensor with that role; throws <see cref="OnnxLoraException"/> (bad input) naming the module when absent.</summary>
    public TensorInfo this[AdapterTensorRole role] =>
        Tensors.TryGetValue(role, out var t) ? t : throw OnnxLoraException.Invalid($"adapter module '{ModulePath}'", $"no {role} tensor.");

    public override string ToString() => $"{ModulePath} ({Kind}, r={Rank}, alpha={Alpha}, s={Scaling})";
}

/// <summary>What an <see cref="AdapterExtraTensor"/> is.</summary>
public enum AdapterExtraKind
{
    /// <summary>A parameter of a module listed in modules_to_save (trained in full).</summary>
    ModulesToSave,

    /// <summary>A bias trained because the config says bias = "all" or "lora_only".</summary>
    Bias,

    /// <summary>A full embedding / LM-head weight PEFT saved beside the adapter (resized vocabulary or targeted embedding).</summary>
    SavedEmbedding,
}

/// <summary>
/// A tensor saved with the adapter that replaces a base model tensor outright when merged.
/// </summary>
/// <param name="Key">The key in adapter_model.safetensors.</param>
/// <param name="TargetName">The base model's tensor name it replaces (without "base_model.model.").</param>
/// <param name="Kind">Why it is saved.</param>
/// <param name="Tensor">Its stored info.</param>
public sealed record AdapterExtraTensor(string Key, string TargetName, AdapterExtraKind Kind, TensorInfo Tensor);
