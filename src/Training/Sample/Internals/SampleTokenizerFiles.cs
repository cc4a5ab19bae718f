using System.Text.Encodings.Web;
using System.Text.Json;

namespace OnnxLora.Training.Sample.Internals;

/// <summary>
/// Writes the sample's byte-level BPE as a Hugging Face <c>tokenizer.json</c> (the GPT-2 / LLaMA 3
/// layout: ByteLevel pre-tokenizer and decoder, a template that puts &lt;s&gt; first) and its
/// <c>tokenizer_config.json</c>. Ids: 0 &lt;unk&gt;, 1 &lt;s&gt;, 2 &lt;/s&gt;, 3 &lt;pad&gt;, then
/// the 256 byte symbols in byte order, then one token per merge in rank order.
/// </summary>
internal static class SampleTokenizerFiles
{
    public const int UnkId = 0;
    public const int BosId = 1;
    public const int EosId = 2;
    public const int PadId = 3;
    public const int FirstByteId = 4;

    private static readonly string[] Specials = ["<unk>", "<s>", "</s>", "<pad>"];

    private static readonly JsonWriterOptions WriterOptions = new()
    {
        Indented = true,
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    /// <summary>Vocabulary size for these merges.</summary>
    public static int VocabSize(int mergeCount) => FirstByteId + 256 + mergeCount;

    public static byte[] TokenizerJson(IReadOnlyList<(string Left, string Right)> merges)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, WriterOptions))
        {
            w.WriteStartObject();
            w.WriteString("version", "1.0");
            w.WriteNull("truncation");
            w.WriteNull("padding");
            w.WriteStartArray("added_tokens");
            for (int i = 0; i < Specials.Length; i++)
            {
                w.WriteStartObject();
                w.WriteNumber("id", i);
                w.WriteString("content", Specials[i]);
                w.WriteBoolean("single_word", false);
                w.WriteBoolean("lstrip", false);
                w.WriteBoolean("rstrip", false);
                w.WriteBoolean("normalized", false);
                w.WriteBoolean("special", true);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteNull("normalizer");
            w.WriteStartObject("pre_tokenizer");
            WriteByteLevel(w);
            w.WriteEndObject();
            w.WriteStartObject("post_processor");
            w.WriteString("type", "TemplateProcessing");
            w.WriteStartArray("single");
            WriteSpecialPiece(w, "<s>");
            WriteSequencePiece(w, "A");
            w.WriteEndArray();
            w.WriteStartArray("pair");
            WriteSpecialPiece(w, "<s>");
            WriteSequencePiece(w, "A");
            WriteSpecialPiece(w, "<s>");
            WriteSequencePiece(w, "B");
            w.WriteEndArray();
            w.WriteStartObject("special_tokens");
            w.WriteStartObject("<s>");
            w.WriteString("id", "<s>");
            w.WriteStartArray("ids");
            w.WriteNumberValue(BosId);
            w.WriteEndArray();
            w.WriteStartArray("tokens");
            w.WriteStringValue("<s>");
            w.WriteEndArray();
            w.WriteEndObject();
            w.WriteEndObject();
            w.WriteEndObject();
            w.WriteStartObject("decoder");
            WriteByteLevel(w);
            w.WriteEndObject();
            w.WriteStartObject("model");
            w.WriteString("type", "BPE");
            w.WriteNull("dropout");
            w.WriteNull("unk_token");
            w.WriteNull("continuing_subword_prefix");
            w.WriteNull("end_of_word_suffix");
            w.WriteBoolean("fuse_unk", false);
            w.WriteBoolean("byte_fallback", false);
            w.WriteBoolean("ignore_merges", false);
            w.WriteStartObject("vocab");
            for (int i = 0; i < Specials.Length; i++)
            {
                w.WriteNumber(Specials[i], i);
            }
            var symbols = ByteLevelAlphabet.Symbols;
            for (int b = 0; b < 256; b++)
            {
                w.WriteNumber(symbols[b].ToString(), FirstByteId + b);
            }
            for (int m = 0; m < merges.Count; m++)
            {
                w.WriteNumber(merges[m].Left + merges[m].Right, FirstByteId + 256 + m);
            }
            w.WriteEndObject();
            w.WriteStartArray("merges");
            foreach (var (left, right) in merges)
            {
                w.WriteStartArray();
                w.WriteStringValue(left);
                w.WriteStringValue(right);
                w.WriteEndArray();
            }
            w.WriteEndArray();
            w.WriteEndObject();
            w.WriteEndObject();
        }
        buffer.WriteByte((byte)'\n');
        return buffer.ToArray();
    }

    public static byte[] TokenizerConfigJson(int maxLength)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, WriterOptions))
        {
            w.WriteStartObject();
            w.WriteBoolean("add_bos_token", true);
            w.WriteBoolean("add_eos_token", false);
            w.WriteString("bos_token", "<s>");
            w.WriteString("eos_token", "</s>");
            w.WriteString("pad_token", "<pad>");
            w.WriteString("unk_token", "<unk>");
            w.WriteBoolean("clean_up_tokenization_spaces", false);
            w.WriteNumber("model_max_length", maxLength);
            w.WriteString("tokenizer_class", "PreTrainedTokenizerFast");
            w.WriteEndObject();
        }
        buffer.WriteByte((byte)'\n');
        return buffer.ToArray();
    }

    private static void WriteByteLevel(Utf8JsonWriter w)
    {
        w.WriteString("type", "ByteLevel");
        w.WriteBoolean("add_prefix_space", false);
        w.WriteBoolean("trim_offsets", true);
        w.WriteBoolean("use_regex", true);
    }

    private static void WriteSpecialPiece(Utf8JsonWriter w, string id)
    {
        w.WriteStartObject();
        w.WriteStartObject("SpecialToken");
        w.WriteString("id", id);
        w.WriteNumber("type_id", 0);
        w.WriteEndObject();
        w.WriteEndObject();
    }

    private static void WriteSequencePiece(Utf8JsonWriter w, string id)
    {
        w.WriteStartObject();
        w.WriteStartObject("Sequence");
        w.WriteString("id", id);
        w.WriteNumber("type_id", 0);
        w.WriteEndObject();
        w.WriteEndObject();
    }
}
