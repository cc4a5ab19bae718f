using System.Globalization;

namespace OnnxLora.Core.HuggingFace;

/// <summary>
/// The config of a LLaMA-family decoder (<c>model_type</c> llama, mistral or qwen2). Defaults are
/// those of Hugging Face's <c>LlamaConfig</c>; the five size fields are required in a file.
/// </summary>
public sealed record LlamaConfig : HfConfig
{
    private readonly int? _numKeyValueHeads;
    private readonly int? _headDim;

    /// <inheritdoc/>
    public override string ModelType { get; init; } = "llama";

    public int VocabSize { get; init; } = 32000;

    public int HiddenSize { get; init; } = 4096;

    public int IntermediateSize { get; init; } = 11008;

    public int NumHiddenLayers { get; init; } = 32;

    public int NumAttentionHeads { get; init; } = 32;

    /// <summary>Key/value heads for grouped-query attention; defaults to <see cref="NumAttentionHeads"/>.</summary>
    public int NumKeyValueHeads { get => _numKeyValueHeads ?? NumAttentionHeads; init => _numKeyValueHeads = value; }

    /// <summary>Size of one attention head; defaults to <see cref="HiddenSize"/> / <see cref="NumAttentionHeads"/>.</summary>
    public int HeadDim { get => _headDim ?? (NumAttentionHeads > 0 ? HiddenSize / NumAttentionHeads : 0); init => _headDim = value; }

    /// <summary>True when head_dim was given explicitly (then hidden_size need not equal heads × head_dim).</summary>
    public bool HasExplicitHeadDim => _headDim is not null;

    public double RmsNormEps { get; init; } = 1e-6;

    public double RopeTheta { get; init; } = 10000.0;

    /// <summary>The <c>rope_scaling</c> object, or null for plain RoPE.</summary>
    public RopeScaling? RopeScaling { get; init; }

    public int MaxPositionEmbeddings { get; init; } = 2048;

    /// <summary>When true the checkpoint has no <c>lm_head.weight</c>: the output head reuses <c>model.embed_tokens.weight</c>.</summary>
    public bool TieWordEmbeddings { get; init; }

    /// <summary>The MLP activation; only "silu" is supported.</summary>
    public string HiddenAct { get; init; } = "silu";

    /// <summary>Bias on q/k/v/o projections (llama). Qwen2 always has q/k/v bias and no o bias, see <see cref="QkvBias"/>.</summary>
    public bool AttentionBias { get; init; }

    /// <summary>Bias on gate/up/down projections (llama).</summary>
    public bool MlpBias { get; init; }

    /// <summary>Dropout on attention probabilities while training (default 0).</summary>
    public double AttentionDropout { get; init; }

    /// <summary>Mistral's sliding attention window (keys more than this many positions back are masked), or null.</summary>
    public int? SlidingWindow { get; init; }

    public long? PadTokenId { get; init; }

    public long? BosTokenId { get; init; } = 1;

    /// <summary>End-of-sequence ids (Llama 3 lists several).</summary>
    public IReadOnlyList<long> EosTokenIds { get; init; } = [2];

    /// <summary>Whether q_proj, k_proj and v_proj have a bias (always for qwen2).</summary>
    public bool QkvBias => ModelType == "qwen2" || AttentionBias;

    /// <summary>Whether o_proj has a bias (never for qwen2).</summary>
    public bool OutputProjectionBias => ModelType != "qwen2" && AttentionBias;

    /// <summary>Reads and validates a LLaMA-family config.json (folder or file).</summary>
    /// <exception cref="OnnxLoraException">Bad input: invalid, or the file holds another family.</exception>
    public static new LlamaConfig Load(string dirOrFile)
    {
        var config = HfConfig.Load(dirOrFile);
        return config as LlamaConfig
            ?? throw Internals.FormatThrow.Invalid(config.SourcePath!, "field 'model_type'", $"\"{config.ModelType}\"", "llama, mistral or qwen2");
    }

    internal static LlamaConfig Read(ConfigJson json, string modelType)
    {
        int? slidingWindow = null;
        if (modelType == "mistral")
        {
            slidingWindow = json.OptionalInt("sliding_window");
        }
        else if (modelType == "qwen2")
        {
            if (json.Bool("use_sliding_window", false))
            {
                throw json.Invalid("use_sliding_window", "true", "false (sliding-window attention in Qwen2 is not supported)");
            }
            json.Consume("sliding_window");
            json.Consume("max_window_layers");
        }
        var config = new LlamaConfig
        {
            ModelType = modelType,
            VocabSize = json.RequiredInt("vocab_size"),
            HiddenSize = json.RequiredInt("hidden_size"),
            IntermediateSize = json.RequiredInt("intermediate_size"),
            NumHiddenLayers = json.RequiredInt("num_hidden_layers"),
            NumAttentionHeads = json.RequiredInt("num_attention_heads"),
            RmsNormEps = json.Double("rms_norm_eps", 1e-6),
            RopeTheta = json.Double("rope_theta", 10000.0),
            RopeScaling = RopeScaling.Read(json.Object("rope_scaling")),
            MaxPositionEmbeddings = json.Int("max_position_embeddings", 2048),
            TieWordEmbeddings = json.Bool("tie_word_embeddings", false),
            HiddenAct = json.String("hidden_act") ?? "silu",
            AttentionBias = modelType == "llama" && json.Bool("attention_bias", false),
            MlpBias = modelType == "llama" && json.Bool("mlp_bias", false),
            AttentionDropout = json.Double("attention_dropout", 0.0),
            SlidingWindow = slidingWindow,
            PadTokenId = json.OptionalLong("pad_token_id"),
            BosTokenId = json.Exists("bos_token_id") ? json.OptionalLong("bos_token_id") : 1,
            EosTokenIds = json.Exists("eos_token_id") ? json.LongList("eos_token_id") : [2],
        };
        if (json.OptionalInt("num_key_value_heads") is int kv)
        {
            config = config with { NumKeyValueHeads = kv };
        }
        if (json.OptionalInt("head_dim") is int hd)
        {
            config = config with { HeadDim = hd };
        }
        return config;
    }

    /// <inheritdoc/>
    public override void Validate()
    {
        if (ModelType is not ("llama" or "mistral" or "qwen2"))
        {
            throw Invalid("model_type", $"\"{ModelType}\"", "llama, mistral or qwen2");
        }
        RequirePositive("vocab_size", VocabSize);
        RequirePositive("hidden_size", HiddenSize);
        RequirePositive("intermediate_size", IntermediateSize);
        RequirePositive("num_hidden_layers", NumHiddenLayers);
        RequirePositive("num_attention_heads", NumAttentionHeads);
        RequirePositive("num_key_value_heads", NumKeyValueHeads);
        if (!HasExplicitHeadDim && HiddenSize % NumAttentionHeads != 0)
        {
            throw Invalid("num_attention_heads", Text(NumAttentionHeads), $"a divisor of hidden_size ({Text(HiddenSize)})");
        }
        RequirePositive("head_dim", HeadDim);
        if (HeadDim % 2 != 0)
        {
            throw Invalid("head_dim", Text(HeadDim), "an even number (rotary embeddings rotate pairs)");
        }
        if (NumAttentionHeads % NumKeyValueHeads != 0)
        {
            throw Invalid("num_key_value_heads", Text(NumKeyValueHeads), $"a divisor of num_attention_heads ({Text(NumAttentionHeads)})");
        }
        RequirePositiveFinite("rms_norm_eps", RmsNormEps);
        RequirePositiveFinite("rope_theta", RopeTheta);
        RequirePositive("max_position_embeddings", MaxPositionEmbeddings);
        if (HiddenAct != "silu")
        {
            throw Invalid("hidden_act", $"\"{HiddenAct}\"", "\"silu\"");
        }
        RequireProbability("attention_dropout", AttentionDropout);
        if (SlidingWindow is int window)
        {
            RequirePositive("sliding_window", window);
        }
        RopeScaling?.Validate(this);
        RequireTorchDtype();
    }

    private protected override void WriteFamilyFields(FieldWriter w)
    {
        w.Number("vocab_size", VocabSize);
        w.Number("hidden_size", HiddenSize);
        w.Number("intermediate_size", IntermediateSize);
        w.Number("num_hidden_layers", NumHiddenLayers);
        w.Number("num_attention_heads", NumAttentionHeads);
        w.Number("num_key_value_heads", NumKeyValueHeads);
        if (HasExplicitHeadDim)
        {
            w.Number("head_dim", HeadDim);
        }
        w.String("hidden_act", HiddenAct);
        w.Number("max_position_embeddings", MaxPositionEmbeddings);
        w.Number("rms_norm_eps", RmsNormEps);
        w.Number("rope_theta", RopeTheta);
        if (RopeScaling is { } scaling)
        {
            w.Object("rope_scaling", scaling.Write);
        }
        w.Bool("tie_word_embeddings", TieWordEmbeddings);
        if (ModelType == "llama")
        {
            w.Bool("attention_bias", AttentionBias);
            w.Bool("mlp_bias", MlpBias);
        }
        w.Number("attention_dropout", AttentionDropout);
        if (ModelType == "mistral")
        {
            w.NumberOrNull("sliding_window", SlidingWindow);
        }
        w.NumberOrNull("pad_token_id", PadTokenId);
        w.NumberOrNull("bos_token_id", BosTokenId);
        w.Ids("eos_token_id", EosTokenIds);
    }

    internal OnnxLoraException InvalidField(string field, string found, string expected) => Invalid(field, found, expected);

    private static string Text(long value) => value.ToString(CultureInfo.InvariantCulture);
}

/// <summary>
/// The <c>rope_scaling</c> of a LLaMA-family config: "linear" (positions divided by
/// <see cref="Factor"/>) or "llama3" (frequency-dependent scaling of Llama 3.1+).
/// </summary>
public sealed record RopeScaling
{
    /// <summary>"linear" or "llama3".</summary>
    public required string RopeType { get; init; }

    public double Factor { get; init; } = 1.0;

    /// <summary>llama3 only.</summary>
    public double LowFreqFactor { get; init; } = 1.0;

    /// <summary>llama3 only.</summary>
    public double HighFreqFactor { get; init; } = 4.0;

    /// <summary>llama3 only: the context length the model was pre-trained with.</summary>
    public int OriginalMaxPositionEmbeddings { get; init; } = 8192;

    internal static RopeScaling? Read(ConfigJson? json)
    {
        if (json is null)
        {
            return null;
        }
        string type = json.String("rope_type") ?? json.String("type") ?? throw json.Invalid("rope_type", "none", "\"linear\" or \"llama3\"");
        if (type == "default")
        {
            return null;
        }
        if (type is not ("linear" or "llama3"))
        {
            throw json.Invalid("rope_type", $"\"{type}\"", "\"default\", \"linear\" or \"llama3\" (other RoPE scalings are not supported)");
        }
        return new RopeScaling
        {
            RopeType = type,
            Factor = json.Double("factor", 1.0),
            LowFreqFactor = json.Double("low_freq_factor", 1.0),
            HighFreqFactor = json.Double("high_freq_factor", 4.0),
            OriginalMaxPositionEmbeddings = json.Int("original_max_position_embeddings", 8192),
        };
    }

    internal void Validate(LlamaConfig owner)
    {
        if (RopeType is not ("linear" or "llama3"))
        {
            throw owner.InvalidField("rope_scaling.rope_type", $"\"{RopeType}\"", "\"linear\" or \"llama3\"");
        }
        if (!(Factor >= 1) || !double.IsFinite(Factor))
        {
            throw owner.InvalidField("rope_scaling.factor", Factor.ToString("R", CultureInfo.InvariantCulture), "a finite number >= 1");
        }
        if (RopeType == "llama3")
        {
            if (!(LowFreqFactor > 0) || !(HighFreqFactor > LowFreqFactor) || !double.IsFinite(HighFreqFactor))
            {
                throw owner.InvalidField("rope_scaling.high_freq_factor", HighFreqFactor.ToString("R", CultureInfo.InvariantCulture), $"a finite number > low_freq_factor ({LowFreqFactor.ToString("R", CultureInfo.InvariantCulture)}) > 0");
            }
            if (OriginalMaxPositionEmbeddings <= 0)
            {
                throw owner.InvalidField("rope_scaling.original_max_position_embeddings", OriginalMaxPositionEmbeddings.ToString(CultureInfo.InvariantCulture), "a positive integer");
            }
        }
    }

    internal void Write(HfConfig.FieldWriter w)
    {
        w.String("rope_type", RopeType);
        w.Number("factor", Factor);
        if (RopeType == "llama3")
        {
            w.Number("low_freq_factor", LowFreqFactor);
            w.Number("high_freq_factor", HighFreqFactor);
            w.Number("original_max_position_embeddings", OriginalMaxPositionEmbeddings);
        }
    }
}
