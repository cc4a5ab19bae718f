using System.Globalization;

namespace OnnxLora.Core.HuggingFace;

/// <summary>
/// The config of a BERT encoder (<c>model_type</c> bert). Defaults are those of Hugging Face's
/// <c>BertConfig</c> (bert-base); the four size fields are required in a file.
/// </summary>
public sealed record BertConfig : HfConfig
{
    /// <inheritdoc/>
    public override string ModelType { get; init; } = "bert";

    public int VocabSize { get; init; } = 30522;

    public int HiddenSize { get; init; } = 768;

    public int NumHiddenLayers { get; init; } = 12;

    public int NumAttentionHeads { get; init; } = 12;

    public int IntermediateSize { get; init; } = 3072;

    /// <summary>The feed-forward activation; only "gelu" (exact, erf-based) is supported.</summary>
    public string HiddenAct { get; init; } = "gelu";

    /// <summary>Dropout after embeddings and each sub-layer while training.</summary>
    public double HiddenDropoutProb { get; init; } = 0.1;

    /// <summary>Dropout on attention probabilities while training.</summary>
    public double AttentionProbsDropoutProb { get; init; } = 0.1;

    public int MaxPositionEmbeddings { get; init; } = 512;

    public int TypeVocabSize { get; init; } = 2;

    public double LayerNormEps { get; init; } = 1e-12;

    public long? PadTokenId { get; init; } = 0;

    /// <summary>Only "absolute" is supported.</summary>
    public string PositionEmbeddingType { get; init; } = "absolute";

    /// <summary>Size of one attention head.</summary>
    public int HeadDim => NumAttentionHeads > 0 ? HiddenSize / NumAttentionHeads : 0;

    /// <summary>Reads and validates a BERT config.json (folder or file).</summary>
    /// <exception cref="OnnxLoraException">Bad input: invalid, or the file holds another family.</exception>
    public static new BertConfig Load(string dirOrFile)
    {
        var config = HfConfig.Load(dirOrFile);
        return config as BertConfig
            ?? throw Internals.FormatThrow.Invalid(config.SourcePath!, "field 'model_type'", $"\"{config.ModelType}\"", "bert");
    }

    internal static BertConfig Read(ConfigJson json) => new()
    {
        VocabSize = json.RequiredInt("vocab_size"),
        HiddenSize = json.RequiredInt("hidden_size"),
        NumHiddenLayers = json.RequiredInt("num_hidden_layers"),
        NumAttentionHeads = json.RequiredInt("num_attention_heads"),
        IntermediateSize = json.Int("intermediate_size", 3072),
        HiddenAct = json.String("hidden_act") ?? "gelu",
        HiddenDropoutProb = json.Double("hidden_dropout_prob", 0.1),
        AttentionProbsDropoutProb = json.Double("attention_probs_dropout_prob", 0.1),
        MaxPositionEmbeddings = json.Int("max_position_embeddings", 512),
        TypeVocabSize = json.Int("type_vocab_size", 2),
        LayerNormEps = json.Double("layer_norm_eps", 1e-12),
        PadTokenId = json.Exists("pad_token_id") ? json.OptionalLong("pad_token_id") : 0,
        PositionEmbeddingType = json.String("position_embedding_type") ?? "absolute",
    };

    /// <inheritdoc/>
    public override void Validate()
    {
        if (ModelType != "bert")
        {
            throw Invalid("model_type", $"\"{ModelType}\"", "bert");
        }
        RequirePositive("vocab_size", VocabSize);
        RequirePositive("hidden_size", HiddenSize);
        RequirePositive("num_hidden_layers", NumHiddenLayers);
        RequirePositive("num_attention_heads", NumAttentionHeads);
        if (HiddenSize % NumAttentionHeads != 0)
        {
            throw Invalid("num_attention_heads", Text(NumAttentionHeads), $"a divisor of hidden_size ({Text(HiddenSize)})");
        }
        RequirePositive("intermediate_size", IntermediateSize);
        RequirePositive("max_position_embeddings", MaxPositionEmbeddings);
        RequirePositive("type_vocab_size", TypeVocabSize);
        RequirePositiveFinite("layer_norm_eps", LayerNormEps);
        RequireProbability("hidden_dropout_prob", HiddenDropoutProb);
        RequireProbability("attention_probs_dropout_prob", AttentionProbsDropoutProb);
        if (HiddenAct != "gelu")
        {
            throw Invalid("hidden_act", $"\"{HiddenAct}\"", "\"gelu\"");
        }
        if (PositionEmbeddingType != "absolute")
        {
            throw Invalid("position_embedding_type", $"\"{PositionEmbeddingType}\"", "\"absolute\"");
        }
        RequireTorchDtype();
    }

    private protected override void WriteFamilyFields(FieldWriter w)
    {
        w.Number("vocab_size", VocabSize);
        w.Number("hidden_size", HiddenSize);
        w.Number("num_hidden_layers", NumHiddenLayers);
        w.Number("num_attention_heads", NumAttentionHeads);
        w.Number("intermediate_size", IntermediateSize);
        w.String("hidden_act", HiddenAct);
        w.Number("hidden_dropout_prob", HiddenDropoutProb);
        w.Number("attention_probs_dropout_prob", AttentionProbsDropoutProb);
        w.Number("max_position_embeddings", MaxPositionEmbeddings);
        w.Number("type_vocab_size", TypeVocabSize);
        w.Number("layer_norm_eps", LayerNormEps);
        w.NumberOrNull("pad_token_id", PadTokenId);
        w.String("position_embedding_type", PositionEmbeddingType);
    }

    private static string Text(long value) => value.ToString(CultureInfo.InvariantCulture);
}
