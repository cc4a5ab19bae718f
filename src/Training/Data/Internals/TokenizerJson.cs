using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace OnnxLora.Training.Data.Internals;

/// <summary>
/// Reads a Hugging Face tokenizer.json and builds the matching Microsoft.ML.Tokenizers tokenizer.
/// Only the fields that change how text becomes ids are read; a value that would change them in a
/// way this mapping cannot reproduce is an error, never silently ignored.
/// </summary>
internal static class TokenizerJson
{
    /// <summary>GPT-2's pre-tokenization pattern, used by the ByteLevel pre-tokenizer when use_regex is true.</summary>
    internal const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    /// <summary>Upper bound on tokenizer.json size; real ones are a few MB, large vocabularies ~20 MB.</summary>
    private const long MaxFileBytes = 256L << 20;

    public static CheckpointTokenizer Build(string file)
    {
        long length = new FileInfo(file).Length;
        if (length > MaxFileBytes)
        {
            throw DataThrow.Field(file, "file size", $"{length} bytes", $"at most {MaxFileBytes} bytes for a tokenizer.json");
        }
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(File.ReadAllBytes(file), new JsonDocumentOptions { MaxDepth = 64 });
        }
        catch (JsonException e)
        {
            throw DataThrow.File(file, $"not valid JSON ({e.Message})", e);
        }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw DataThrow.Field(file, "root", root.ValueKind.ToString(), "a JSON object");
            }
            var model = Required(file, root, "model", JsonValueKind.Object);
            string type = model.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString()! : "(missing)";
            var specials = AddedTokens(file, root);
            var (prefix, suffix) = PostProcessor(file, root, specials);
            bool addPrefixSpace = false;
            Tokenizer inner = type switch
            {
                "BPE" => Bpe(file, root, model, specials, out addPrefixSpace),
                "WordPiece" => WordPiece(file, root, model, specials),
                _ => throw DataThrow.Field(file, "model.type", type,
                    "\"BPE\" or \"WordPiece\" (the tokenizer types built from tokenizer.json here); pre-tokenize the data into {\"input_ids\": [...]} lines instead"),
            };
            return new CheckpointTokenizer(file, inner, prefix, suffix, addPrefixSpace);
        }
    }

    private static Tokenizer Bpe(string file, JsonElement root, JsonElement model, Dictionary<string, int> specials, out bool addPrefixSpace)
    {
        addPrefixSpace = false;
        bool byteFallback = model.TryGetProperty("byte_fallback", out var bf) && bf.ValueKind == JsonValueKind.True;
        var preTok = root.TryGetProperty("pre_tokenizer", out var p) ? p : default;
        var normalizer = root.TryGetProperty("normalizer", out var n) ? n : default;
        if (byteFallback || IsSentencePieceStyle(preTok) || IsSentencePieceStyle(normalizer))
        {
            return SentencePiece(file, specials);
        }
        if (model.TryGetProperty("dropout", out var dropout) && dropout.ValueKind == JsonValueKind.Number && dropout.GetDouble() != 0)
        {
            throw DataThrow.Field(file, "model.dropout", dropout.GetRawText(), "null or 0 (BPE dropout makes encoding random)");
        }
        var vocab = Vocabulary(file, model);
        var merges = Merges(file, model);
        var (preTokenizer, byteLevel, prefixSpace) = BpePreTokenizer(file, preTok, specials);
        addPrefixSpace = prefixSpace;
        var options = new BpeOptions(vocab)
        {
            Merges = merges,
            SpecialTokens = specials.Count > 0 ? specials : null,
            PreTokenizer = preTokenizer,
            Normalizer = Normalizer(file, normalizer),
            ByteLevel = byteLevel,
            UnknownToken = OptionalString(file, model, "unk_token"),
            ContinuingSubwordPrefix = OptionalString(file, model, "continuing_subword_prefix"),
            EndOfWordSuffix = OptionalString(file, model, "end_of_word_suffix"),
            FuseUnknownTokens = model.TryGetProperty("fuse_unk", out var fuse) && fuse.ValueKind == JsonValueKind.True,
        };
        try
        {
            return BpeTokenizer.Create(options);
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or FormatException)
        {
            throw DataThrow.File(file, $"BPE model could not be built ({e.Message})", e);
        }
    }

    private static Tokenizer SentencePiece(string file, Dictionary<string, int> specials)
    {
        string model = Path.Combine(Path.GetDirectoryName(file)!, SentencePieceFileName);
        if (!File.Exists(model))
        {
            throw DataThrow.Field(file, "model", "a SentencePiece-style BPE (byte_fallback / Metaspace) without a tokenizer.model beside it",
                "a byte-level or whitespace BPE, or a tokenizer.model; pre-tokenize the data into {\"input_ids\": [...]} lines instead");
        }
        return LoadSentencePiece(model, specials.Count > 0 ? specials : null);
    }

    /// <summary>The SentencePiece model file LLaMA-2-style checkpoints ship.</summary>
    public const string SentencePieceFileName = "tokenizer.model";

    /// <summary>
    /// A checkpoint that ships only tokenizer.model (no tokenizer.json): encoded as Hugging Face's
    /// <c>LlamaTokenizer</c> does by default (add_bos_token true, add_eos_token false), so the template is the
    /// model's BOS before the text and nothing after.
    /// </summary>
    public static CheckpointTokenizer BuildSentencePiece(string model)
    {
        var tokenizer = LoadSentencePiece(model, specials: null);
        return new CheckpointTokenizer(model, tokenizer, [tokenizer.BeginningOfSentenceId], [], addPrefixSpace: false);
    }

    private static LlamaTokenizer LoadSentencePiece(string model, IReadOnlyDictionary<string, int>? specials)
    {
        long length = new FileInfo(model).Length;
        if (length > MaxFileBytes)
        {
            throw DataThrow.Field(model, "file size", $"{length} bytes", $"at most {MaxFileBytes} bytes for a tokenizer.model");
        }
        using var stream = File.OpenRead(model);
        try
        {
            return LlamaTokenizer.Create(stream, addBeginOfSentence: false, addEndOfSentence: false, specialTokens: specials);
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or FormatException or IOException
            or Google.Protobuf.InvalidProtocolBufferException or NotSupportedException)
        {
            throw DataThrow.File(model, $"not a SentencePiece BPE model ({e.Message})", e);
        }
    }

    private static Tokenizer WordPiece(string file, JsonElement root, JsonElement model, Dictionary<string, int> specials)
    {
        var vocab = Vocabulary(file, model);
        // The library reads a vocab.txt (one token per line, line i = id i), so the ids must be 0..n-1.
        var byId = new string?[vocab.Count];
        foreach (var (token, id) in vocab)
        {
            if (id < 0 || id >= byId.Length || byId[id] is not null)
            {
                throw DataThrow.Field(file, "model.vocab", $"id {id} for '{token}'", $"ids 0..{byId.Length - 1}, each once");
            }
            if (token.Contains('\n', StringComparison.Ordinal) || token.Contains('\r', StringComparison.Ordinal))
            {
                throw DataThrow.Field(file, "model.vocab", "a token containing a line break", "tokens without line breaks");
            }
            byId[id] = token;
        }
        using var vocabText = new MemoryStream(Encoding.UTF8.GetBytes(string.Join('\n', byId!) + "\n"));
        string unk = OptionalString(file, model, "unk_token") ?? "[UNK]";
        string prefix = OptionalString(file, model, "continuing_subword_prefix") ?? "##";
        int maxChars = model.TryGetProperty("max_input_chars_per_word", out var mc) && mc.ValueKind == JsonValueKind.Number ? mc.GetInt32() : 100;
        var preTok = root.TryGetProperty("pre_tokenizer", out var p) ? p : default;
        var norm = root.TryGetProperty("normalizer", out var nn) ? nn : default;
        try
        {
            if (TypeOf(preTok) == "BertPreTokenizer" && TypeOf(norm) is "BertNormalizer" or null)
            {
                bool lower = norm.ValueKind == JsonValueKind.Object && norm.TryGetProperty("lowercase", out var lc) && lc.ValueKind == JsonValueKind.True;
                bool stripAccents = norm.ValueKind == JsonValueKind.Object && norm.TryGetProperty("strip_accents", out var sa)
                    ? (sa.ValueKind == JsonValueKind.Null ? lower : sa.ValueKind == JsonValueKind.True)
                    : lower;
                bool cjk = norm.ValueKind != JsonValueKind.Object || !norm.TryGetProperty("handle_chinese_chars", out var hc) || hc.ValueKind != JsonValueKind.False;
                return BertTokenizer.Create(vocabText, new BertOptions
                {
                    LowerCaseBeforeTokenization = lower,
                    RemoveNonSpacingMarks = stripAccents,
                    IndividuallyTokenizeCjk = cjk,
                    ApplyBasicTokenization = true,
                    SplitOnSpecialTokens = true,
                    UnknownToken = unk,
                    ContinuingSubwordPrefix = prefix,
                    MaxInputCharsPerWord = maxChars,
                    SeparatorToken = byId.Contains("[SEP]") ? "[SEP]" : unk,
                    ClassificationToken = byId.Contains("[CLS]") ? "[CLS]" : unk,
                    PaddingToken = byId.Contains("[PAD]") ? "[PAD]" : unk,
                    MaskingToken = byId.Contains("[MASK]") ? "[MASK]" : unk,
                });
            }
            var (preTokenizer, byteLevel, _) = BpePreTokenizer(file, preTok, specials);
            if (byteLevel)
            {
                throw DataThrow.Field(file, "pre_tokenizer.type", "ByteLevel with a WordPiece model", "BertPreTokenizer, Whitespace or WhitespaceSplit");
            }
            return WordPieceTokenizer.Create(vocabText, new WordPieceOptions
            {
                PreTokenizer = preTokenizer,
                Normalizer = Normalizer(file, norm),
                SpecialTokens = specials.Count > 0 ? specials : null,
                UnknownToken = unk,
                ContinuingSubwordPrefix = prefix,
                MaxInputCharsPerWord = maxChars,
            });
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or FormatException)
        {
            throw DataThrow.File(file, $"WordPiece model could not be built ({e.Message})", e);
        }
    }

    private static (PreTokenizer? PreTokenizer, bool ByteLevel, bool AddPrefixSpace) BpePreTokenizer(string file, JsonElement pre, Dictionary<string, int> specials)
    {
        var sp = specials.Count > 0 ? specials : null;
        switch (TypeOf(pre))
        {
            case null:
                throw DataThrow.Field(file, "pre_tokenizer", "null", "a pre-tokenizer (ByteLevel, Split+ByteLevel, Whitespace, WhitespaceSplit or BertPreTokenizer)");
            case "ByteLevel":
                if (!Flag(pre, "use_regex", defaultValue: true))
                {
                    throw DataThrow.Field(file, "pre_tokenizer.use_regex", "false on a lone ByteLevel", "true (or a Split before it)");
                }
                return (new RegexPreTokenizer(new Regex(Gpt2Pattern, RegexOptions.Compiled), sp), true, Flag(pre, "add_prefix_space", defaultValue: false));
            case "Whitespace":
                return (PreTokenizer.CreateWordOrNonWord(sp), false, false);
            case "WhitespaceSplit":
                return (PreTokenizer.CreateWhiteSpace(sp), false, false);
            case "Sequence":
                {
                    // The LLaMA 3 / GPT-4 layout: Split(regex, Isolated) then ByteLevel(use_regex: false).
                    var list = pre.TryGetProperty("pretokenizers", out var l) && l.ValueKind == JsonValueKind.Array ? l.EnumerateArray().ToList() : [];
                    if (list.Count == 2 && TypeOf(list[0]) == "Split" && TypeOf(list[1]) == "ByteLevel" && !Flag(list[1], "use_regex", defaultValue: true))
                    {
                        var split = list[0];
                        string behavior = split.TryGetProperty("behavior", out var b) && b.ValueKind == JsonValueKind.String ? b.GetString()! : "";
                        bool invert = Flag(split, "invert", defaultValue: false);
                        if (split.TryGetProperty("pattern", out var pat) && pat.ValueKind == JsonValueKind.Object
                            && pat.TryGetProperty("Regex", out var rx) && rx.ValueKind == JsonValueKind.String && behavior == "Isolated" && !invert)
                        {
                            Regex regex;
                            try
                            {
                                regex = new Regex(rx.GetString()!, RegexOptions.Compiled, TimeSpan.FromSeconds(10));
                            }
                            catch (ArgumentException e)
                            {
                                throw DataThrow.File(file, $"pre_tokenizer.pretokenizers[0].pattern.Regex: not a .NET regular expression ({e.Message})", e);
                            }
                            return (new RegexPreTokenizer(regex, sp), true, Flag(list[1], "add_prefix_space", defaultValue: false));
                        }
                    }
                    throw DataThrow.Field(file, "pre_tokenizer", "a Sequence other than [Split(Regex, Isolated), ByteLevel(use_regex: false)]",
                        "ByteLevel, Split+ByteLevel, Whitespace, WhitespaceSplit or BertPreTokenizer");
                }
            default:
                throw DataThrow.Field(file, "pre_tokenizer.type", $"\"{TypeOf(pre)}\"", "ByteLevel, Split+ByteLevel, Whitespace, WhitespaceSplit or BertPreTokenizer");
        }
    }

    private static Normalizer? Normalizer(string file, JsonElement norm)
    {
        switch (TypeOf(norm))
        {
            case null:
                return null;
            case "Lowercase":
                return LowerCaseNormalizer.Instance;
            case "NFC":
            case "NFD":
            case "NFKC":
            case "NFKD":
                return new UnicodeNormalizer(Enum.Parse<NormalizationForm>("Form" + TypeOf(norm)![2..]));
            case "Sequence":
                {
                    var parts = norm.TryGetProperty("normalizers", out var l) && l.ValueKind == JsonValueKind.Array
                        ? l.EnumerateArray().Select(e => Normalizer(file, e)).Where(x => x is not null).Select(x => x!).ToList()
                        : [];
                    return parts.Count switch
                    {
                        0 => null,
                        1 => parts[0],
                        _ => new SequenceNormalizer(parts),
                    };
                }
            default:
                throw DataThrow.Field(file, "normalizer.type", $"\"{TypeOf(norm)}\"", "null, Lowercase, NFC, NFD, NFKC, NFKD or a Sequence of them");
        }
    }

    private static bool IsSentencePieceStyle(JsonElement e)
    {
        string? type = TypeOf(e);
        if (type is "Metaspace" or "Prepend" or "Replace")
        {
            return true;
        }
        if (type == "Sequence")
        {
            foreach (string key in new[] { "pretokenizers", "normalizers" })
            {
                if (e.TryGetProperty(key, out var list) && list.ValueKind == JsonValueKind.Array && list.EnumerateArray().Any(IsSentencePieceStyle))
                {
                    return true;
                }
            }
        }
        return false;
    }

    private static Dictionary<string, int> Vocabulary(string file, JsonElement model)
    {
        var vocab = Required(file, model, "vocab", JsonValueKind.Object, "model.vocab");
        var result = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var entry in vocab.EnumerateObject())
        {
            if (entry.Value.ValueKind != JsonValueKind.Number || !entry.Value.TryGetInt32(out int id) || id < 0)
            {
                throw DataThrow.Field(file, $"model.vocab[\"{entry.Name}\"]", entry.Value.GetRawText(), "a non-negative integer id");
            }
            if (!result.TryAdd(entry.Name, id))
            {
                throw DataThrow.Field(file, "model.vocab", $"'{entry.Name}' twice", "each token once");
            }
        }
        return result;
    }

    private static List<string> Merges(string file, JsonElement model)
    {
        var merges = new List<string>();
        if (!model.TryGetProperty("merges", out var list) || list.ValueKind == JsonValueKind.Null)
        {
            return merges;
        }
        if (list.ValueKind != JsonValueKind.Array)
        {
            throw DataThrow.Field(file, "model.merges", list.ValueKind.ToString(), "an array");
        }
        int index = 0;
        foreach (var m in list.EnumerateArray())
        {
            if (m.ValueKind == JsonValueKind.String && m.GetString()!.Split(' ').Length == 2)
            {
                merges.Add(m.GetString()!);
            }
            else if (m.ValueKind == JsonValueKind.Array && m.GetArrayLength() == 2 && m[0].ValueKind == JsonValueKind.String
                && m[1].ValueKind == JsonValueKind.String && !m[0].GetString()!.Contains(' ', StringComparison.Ordinal)
                && !m[1].GetString()!.Contains(' ', StringComparison.Ordinal))
            {
                merges.Add(m[0].GetString() + " " + m[1].GetString());
            }
            else
            {
                throw DataThrow.Field(file, $"model.merges[{index}]", m.GetRawText(), "\"left right\" or [\"left\", \"right\"] without spaces inside the parts");
            }
            index++;
        }
        return merges;
    }

    private static Dictionary<string, int> AddedTokens(string file, JsonElement root)
    {
        var result = new Dictionary<string, int>(StringComparer.Ordinal);
        if (!root.TryGetProperty("added_tokens", out var list) || list.ValueKind == JsonValueKind.Null)
        {
            return result;
        }
        if (list.ValueKind != JsonValueKind.Array)
        {
            throw DataThrow.Field(file, "added_tokens", list.ValueKind.ToString(), "an array");
        }
        int index = 0;
        foreach (var token in list.EnumerateArray())
        {
            if (token.ValueKind != JsonValueKind.Object
                || !token.TryGetProperty("id", out var id) || !id.TryGetInt32(out int value) || value < 0
                || !token.TryGetProperty("content", out var content) || content.ValueKind != JsonValueKind.String)
            {
                throw DataThrow.Field(file, $"added_tokens[{index}]", token.GetRawText(), "an object with \"id\" (non-negative integer) and \"content\" (string)");
            }
            result[content.GetString()!] = value;
            index++;
        }
        return result;
    }

    private static (int[] Prefix, int[] Suffix) PostProcessor(string file, JsonElement root, Dictionary<string, int> specials)
    {
        var prefix = new List<int>();
        var suffix = new List<int>();
        if (root.TryGetProperty("post_processor", out var post))
        {
            AddPostProcessor(file, post, prefix, suffix, "post_processor");
        }
        return ([.. prefix], [.. suffix]);
    }

    private static void AddPostProcessor(string file, JsonElement post, List<int> prefix, List<int> suffix, string where)
    {
        switch (TypeOf(post))
        {
            case null:
            case "ByteLevel":
                return;
            case "Sequence":
                {
                    var list = post.TryGetProperty("processors", out var l) && l.ValueKind == JsonValueKind.Array ? l.EnumerateArray().ToList() : [];
                    for (int i = 0; i < list.Count; i++)
                    {
                        AddPostProcessor(file, list[i], prefix, suffix, $"{where}.processors[{i}]");
                    }
                    return;
                }
            case "BertProcessing":
            case "RobertaProcessing":
                prefix.Add(PairId(file, post, "cls", where));
                suffix.Add(PairId(file, post, "sep", where));
                return;
            case "TemplateProcessing":
                {
                    var single = Required(file, post, "single", JsonValueKind.Array, $"{where}.single");
                    var tokens = post.TryGetProperty("special_tokens", out var st) && st.ValueKind == JsonValueKind.Object ? st : default;
                    bool seenSequence = false;
                    int index = 0;
                    foreach (var piece in single.EnumerateArray())
                    {
                        if (piece.ValueKind == JsonValueKind.Object && piece.TryGetProperty("Sequence", out _))
                        {
                            seenSequence = true;
                        }
                        else if (piece.ValueKind == JsonValueKind.Object && piece.TryGetProperty("SpecialToken", out var special)
                            && special.TryGetProperty("id", out var name) && name.ValueKind == JsonValueKind.String
                            && tokens.ValueKind == JsonValueKind.Object && tokens.TryGetProperty(name.GetString()!, out var entry)
                            && entry.TryGetProperty("ids", out var ids) && ids.ValueKind == JsonValueKind.Array)
                        {
                            foreach (var id in ids.EnumerateArray())
                            {
                                if (!id.TryGetInt32(out int value) || value < 0)
                                {
                                    throw DataThrow.Field(file, $"{where}.special_tokens[\"{name.GetString()}\"].ids", id.GetRawText(), "non-negative integers");
                                }
                                (seenSequence ? suffix : prefix).Add(value);
                            }
                        }
                        else
                        {
                            throw DataThrow.Field(file, $"{where}.single[{index}]", piece.GetRawText(),
                                "{\"Sequence\": ...} or {\"SpecialToken\": {\"id\": name}} with name listed in special_tokens");
                        }
                        index++;
                    }
                    return;
                }
            default:
                throw DataThrow.Field(file, $"{where}.type", $"\"{TypeOf(post)}\"", "TemplateProcessing, BertProcessing, RobertaProcessing, ByteLevel or a Sequence of them");
        }
    }

    private static int PairId(string file, JsonElement post, string name, string where)
    {
        if (post.TryGetProperty(name, out var pair) && pair.ValueKind == JsonValueKind.Array && pair.GetArrayLength() == 2
            && pair[1].TryGetInt32(out int id) && id >= 0)
        {
            return id;
        }
        throw DataThrow.Field(file, $"{where}.{name}", post.TryGetProperty(name, out var v) ? v.GetRawText() : "(missing)", "[\"token\", id]");
    }

    private static string? TypeOf(JsonElement e) =>
        e.ValueKind == JsonValueKind.Object && e.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString() : null;

    private static bool Flag(JsonElement e, string name, bool defaultValue) =>
        e.ValueKind == JsonValueKind.Object && e.TryGetProperty(name, out var v) && v.ValueKind is JsonValueKind.True or JsonValueKind.False
            ? v.GetBoolean()
            : defaultValue;

    private static string? OptionalString(string file, JsonElement e, string name)
    {
        if (!e.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null)
        {
            return null;
        }
        if (v.ValueKind != JsonValueKind.String)
        {
            throw DataThrow.Field(file, $"model.{name}", v.GetRawText(), "a string or null");
        }
        string s = v.GetString()!;
        return s.Length == 0 ? null : s;
    }

    private static JsonElement Required(string file, JsonElement e, string name, JsonValueKind kind, string? path = null)
    {
        if (!e.TryGetProperty(name, out var v))
        {
            throw DataThrow.Field(file, path ?? name, "(missing)", $"a JSON {kind.ToString().ToLower(CultureInfo.InvariantCulture)}");
        }
        if (v.ValueKind != kind)
        {
            throw DataThrow.Field(file, path ?? name, v.ValueKind.ToString(), $"a JSON {kind.ToString().ToLower(CultureInfo.InvariantCulture)}");
        }
        return v;
    }

    /// <summary>Unicode normalization (HF's NFC/NFD/NFKC/NFKD normalizers).</summary>
    private sealed class UnicodeNormalizer(NormalizationForm form) : Microsoft.ML.Tokenizers.Normalizer
    {
        public override string Normalize(string original) => original.Normalize(form);

        public override string Normalize(ReadOnlySpan<char> original) => original.ToString().Normalize(form);
    }

    /// <summary>Several normalizers in order (HF's normalizers.Sequence).</summary>
    private sealed class SequenceNormalizer(IReadOnlyList<Microsoft.ML.Tokenizers.Normalizer> parts) : Microsoft.ML.Tokenizers.Normalizer
    {
        public override string Normalize(string original)
        {
            foreach (var part in parts)
            {
                original = part.Normalize(original);
            }
            return original;
        }

        public override string Normalize(ReadOnlySpan<char> original) => Normalize(original.ToString());
    }
}
