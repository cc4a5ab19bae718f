using System.Text.Json;
using System.Text.Json.Serialization;
using OnnxLora.Core.Internals;

namespace OnnxLora.Core.GenAi;

/// <summary>
/// <c>genai_config.json</c>, the file ONNX Runtime GenAI reads beside a decoder model. Field names are the ones
/// onnxruntime-genai's <c>src/config.cpp</c> parses (<c>model.type</c>, <c>model.context_length</c>,
/// <c>model.decoder.{filename, head_size, hidden_size, num_attention_heads, num_hidden_layers, num_key_value_heads,
/// inputs, outputs}</c>, <c>search.*</c>); GenAI rejects fields it does not know, so only those are written.
/// </summary>
public sealed record GenAiConfig
{
    /// <summary>The model section.</summary>
    [JsonPropertyName("model")]
    public required GenAiModelSection Model { get; init; }

    /// <summary>Search defaults (greedy unless <see cref="GenAiSearchSection.DoSample"/>).</summary>
    [JsonPropertyName("search")]
    public required GenAiSearchSection Search { get; init; }

    /// <summary>The file name GenAI looks for.</summary>
    public const string FileName = "genai_config.json";

    /// <summary>Serialises to indented JSON.</summary>
    public string ToJson() => JsonSerializer.Serialize(this, GenAiJsonContext.Default.GenAiConfig);

    /// <summary>Reads <paramref name="path"/>.</summary>
    /// <exception cref="OnnxLoraException">Bad input: the file is missing, is not JSON of this shape, or lacks the decoder section.</exception>
    public static GenAiConfig Load(string path)
    {
        if (!File.Exists(path))
        {
            throw OnnxLoraException.NotFound("ONNX Runtime GenAI config", path);
        }
        GenAiConfig? config;
        try
        {
            config = JsonSerializer.Deserialize(File.ReadAllText(path), GenAiJsonContext.Default.GenAiConfig);
        }
        catch (JsonException e)
        {
            throw FormatThrow.Invalid(path, $"is not a valid {FileName}: {e.Message}", e);
        }
        if (config?.Model?.Decoder?.Inputs is null || config.Model.Decoder.Outputs is null || config.Search is null)
        {
            throw FormatThrow.Invalid(path, "fields 'model.decoder.inputs', 'model.decoder.outputs', 'search'", "missing", "present");
        }
        return config;
    }
}

/// <summary>genai_config.json <c>model</c>.</summary>
public sealed record GenAiModelSection
{
    /// <summary>GenAI's model type (<c>llama</c>, <c>mistral</c>, <c>qwen2</c>: the Hugging Face model_type).</summary>
    [JsonPropertyName("type")]
    public required string Type { get; init; }

    /// <summary>The longest sequence (prompt + generated), Hugging Face's max_position_embeddings.</summary>
    [JsonPropertyName("context_length")]
    public required int ContextLength { get; init; }

    /// <summary>Vocabulary size (the logits' last dimension).</summary>
    [JsonPropertyName("vocab_size")]
    public required int VocabSize { get; init; }

    /// <summary>Beginning-of-sequence token id.</summary>
    [JsonPropertyName("bos_token_id")]
    public int BosTokenId { get; init; }

    /// <summary>End-of-sequence token id(s): GenAI accepts a number or an array.</summary>
    [JsonPropertyName("eos_token_id")]
    public required JsonElement EosTokenId { get; init; }

    /// <summary>Padding token id.</summary>
    [JsonPropertyName("pad_token_id")]
    public int PadTokenId { get; init; }

    /// <summary>The decoder graph.</summary>
    [JsonPropertyName("decoder")]
    public required GenAiDecoderSection Decoder { get; init; }

    /// <summary>The end-of-sequence ids as a list.</summary>
    public IReadOnlyList<int> EosTokenIds() => EosTokenId.ValueKind == JsonValueKind.Array
        ? [.. EosTokenId.EnumerateArray().Select(e => e.GetInt32())]
        : [EosTokenId.GetInt32()];
}

/// <summary>genai_config.json <c>model.decoder</c>.</summary>
public sealed record GenAiDecoderSection
{
    /// <summary>Session options; an empty provider list runs on CPU.</summary>
    [JsonPropertyName("session_options")]
    public GenAiSessionOptions SessionOptions { get; init; } = new();

    /// <summary>The model file, relative to the folder.</summary>
    [JsonPropertyName("filename")]
    public required string Filename { get; init; }

    /// <summary>Size of one attention head.</summary>
    [JsonPropertyName("head_size")]
    public required int HeadSize { get; init; }

    /// <summary>Hidden size.</summary>
    [JsonPropertyName("hidden_size")]
    public required int HiddenSize { get; init; }

    /// <summary>Query heads.</summary>
    [JsonPropertyName("num_attention_heads")]
    public required int NumAttentionHeads { get; init; }

    /// <summary>Layers (one past/present pair each).</summary>
    [JsonPropertyName("num_hidden_layers")]
    public required int NumHiddenLayers { get; init; }

    /// <summary>Key/value heads (the cache's second dimension).</summary>
    [JsonPropertyName("num_key_value_heads")]
    public required int NumKeyValueHeads { get; init; }

    /// <summary>Graph input names.</summary>
    [JsonPropertyName("inputs")]
    public required GenAiDecoderInputs Inputs { get; init; }

    /// <summary>Graph output names.</summary>
    [JsonPropertyName("outputs")]
    public required GenAiDecoderOutputs Outputs { get; init; }
}

/// <summary>genai_config.json <c>model.decoder.session_options</c>.</summary>
public sealed record GenAiSessionOptions
{
    /// <summary>The ONNX Runtime log id.</summary>
    [JsonPropertyName("log_id")]
    public string LogId { get; init; } = "onnxruntime-genai";

    /// <summary>Execution providers in order (empty: CPU).</summary>
    [JsonPropertyName("provider_options")]
    public IReadOnlyList<JsonElement> ProviderOptions { get; init; } = [];
}

/// <summary>genai_config.json <c>model.decoder.inputs</c>: the graph's input names (<c>%d</c> is the layer).</summary>
public sealed record GenAiDecoderInputs
{
    /// <summary>Token ids input.</summary>
    [JsonPropertyName("input_ids")]
    public string InputIds { get; init; } = "input_ids";

    /// <summary>Attention mask input.</summary>
    [JsonPropertyName("attention_mask")]
    public string AttentionMask { get; init; } = "attention_mask";

    /// <summary>Position ids input.</summary>
    [JsonPropertyName("position_ids")]
    public string PositionIds { get; init; } = "position_ids";

    /// <summary>Cached keys, a printf pattern over the layer.</summary>
    [JsonPropertyName("past_key_names")]
    public string PastKeyNames { get; init; } = "past_key_values.%d.key";

    /// <summary>Cached values, a printf pattern over the layer.</summary>
    [JsonPropertyName("past_value_names")]
    public string PastValueNames { get; init; } = "past_key_values.%d.value";
}

/// <summary>genai_config.json <c>model.decoder.outputs</c>: the graph's output names (<c>%d</c> is the layer).</summary>
public sealed record GenAiDecoderOutputs
{
    /// <summary>Logits output.</summary>
    [JsonPropertyName("logits")]
    public string Logits { get; init; } = "logits";

    /// <summary>Updated keys, a printf pattern over the layer.</summary>
    [JsonPropertyName("present_key_names")]
    public string PresentKeyNames { get; init; } = "present.%d.key";

    /// <summary>Updated values, a printf pattern over the layer.</summary>
    [JsonPropertyName("present_value_names")]
    public string PresentValueNames { get; init; } = "present.%d.value";
}

/// <summary>genai_config.json <c>search</c>: generation defaults (greedy, one beam).</summary>
public sealed record GenAiSearchSection
{
    /// <summary>Sample (top-k / top-p / temperature) instead of greedy argmax.</summary>
    [JsonPropertyName("do_sample")]
    public bool DoSample { get; init; }

    /// <summary>Longest sequence, prompt included.</summary>
    [JsonPropertyName("max_length")]
    public required int MaxLength { get; init; }

    /// <summary>Shortest sequence.</summary>
    [JsonPropertyName("min_length")]
    public int MinLength { get; init; }

    /// <summary>Beams (1: no beam search).</summary>
    [JsonPropertyName("num_beams")]
    public int NumBeams { get; init; } = 1;

    /// <summary>Sequences returned per prompt.</summary>
    [JsonPropertyName("num_return_sequences")]
    public int NumReturnSequences { get; init; } = 1;

    /// <summary>The cache is separate past and present tensors, concatenated by the graph (false; true needs GenAI's GroupQueryAttention graphs).</summary>
    [JsonPropertyName("past_present_share_buffer")]
    public bool PastPresentShareBuffer { get; init; }

    /// <summary>1: no repetition penalty.</summary>
    [JsonPropertyName("repetition_penalty")]
    public float RepetitionPenalty { get; init; } = 1f;

    /// <summary>Sampling temperature.</summary>
    [JsonPropertyName("temperature")]
    public float Temperature { get; init; } = 1f;

    /// <summary>Top-k when sampling.</summary>
    [JsonPropertyName("top_k")]
    public int TopK { get; init; } = 50;

    /// <summary>Top-p when sampling (1: off).</summary>
    [JsonPropertyName("top_p")]
    public float TopP { get; init; } = 1f;
}

[JsonSourceGenerationOptions(WriteIndented = true, DefaultIgnoreCondition = JsonIgnoreCondition.Never)]
[JsonSerializable(typeof(GenAiConfig))]
internal sealed partial class GenAiJsonContext : JsonSerializerContext;
