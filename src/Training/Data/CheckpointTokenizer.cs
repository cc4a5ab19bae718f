using Microsoft.ML.Tokenizers;
using OnnxLora.Core;
using OnnxLora.Training.Data.Internals;

namespace OnnxLora.Training.Data;

/// <summary>
/// A checkpoint's Hugging Face <c>tokenizer.json</c>, built into a Microsoft.ML.Tokenizers tokenizer,
/// together with the special tokens its post-processor puts around a single sequence (BOS for
/// LLaMA, [CLS] … [SEP] for BERT).
/// </summary>
/// <remarks>
/// Microsoft.ML.Tokenizers has no reader for <c>tokenizer.json</c>, so the file is read here and mapped
/// onto the library's tokenizers. Supported: <c>model.type</c> "BPE" (byte-level, as in GPT-2 and
/// LLaMA 3, or with a whitespace/word pre-tokenizer) and "WordPiece" (BERT). SentencePiece-style
/// BPE (byte_fallback, Metaspace) is loaded from the folder's <c>tokenizer.model</c> when present; a folder
/// with only a <c>tokenizer.model</c> (LLaMA-2-style checkpoints) is read with the library's
/// <c>LlamaTokenizer</c> and puts the model's BOS before each sequence, as Hugging Face's LlamaTokenizer does.
/// Anything else (Unigram, WordLevel, unknown normalizers or pre-tokenizers) fails with an
/// <see cref="OnnxLoraException"/> (bad input) naming the field; pre-tokenize such data into
/// <c>{"input_ids": [...]}</c> lines instead.
/// </remarks>
public sealed class CheckpointTokenizer
{
    /// <summary>The file name Hugging Face checkpoints use.</summary>
    public const string FileName = "tokenizer.json";

    private readonly bool _addPrefixSpace;

    internal CheckpointTokenizer(string source, Tokenizer inner, IReadOnlyList<int> prefix, IReadOnlyList<int> suffix, bool addPrefixSpace)
    {
        Source = source;
        Inner = inner;
        Prefix = prefix;
        Suffix = suffix;
        _addPrefixSpace = addPrefixSpace;
    }

    /// <summary>The tokenizer.json (or tokenizer.model) this was read from.</summary>
    public string Source { get; }

    /// <summary>The Microsoft.ML.Tokenizers tokenizer that encodes the text (without the template's special tokens).</summary>
    public Tokenizer Inner { get; }

    /// <summary>Special token ids the post-processor puts before a single sequence.</summary>
    public IReadOnlyList<int> Prefix { get; }

    /// <summary>Special token ids the post-processor puts after a single sequence.</summary>
    public IReadOnlyList<int> Suffix { get; }

    /// <summary>True when <paramref name="directory"/> holds a tokenizer.json or a SentencePiece tokenizer.model.</summary>
    public static bool Exists(string directory) =>
        File.Exists(Path.Combine(directory, FileName)) || File.Exists(Path.Combine(directory, TokenizerJson.SentencePieceFileName));

    /// <summary>
    /// Loads a tokenizer from a tokenizer.json file, a SentencePiece tokenizer.model file, or a checkpoint folder
    /// holding either (tokenizer.json first).
    /// </summary>
    /// <exception cref="OnnxLoraException">Bad input: no tokenizer there, or the file is malformed or uses a tokenizer type this
    /// class cannot build.</exception>
    public static CheckpointTokenizer Load(string path)
    {
        string file = path;
        if (Directory.Exists(path))
        {
            string sentencePiece = Path.Combine(path, TokenizerJson.SentencePieceFileName);
            file = Path.Combine(path, FileName);
            file = File.Exists(file) || !File.Exists(sentencePiece) ? file : sentencePiece;
        }
        file = Path.GetFullPath(file);
        if (!File.Exists(file))
        {
            throw OnnxLoraException.NotFound("tokenizer file", file);
        }
        return Path.GetFileName(file) == TokenizerJson.SentencePieceFileName ? TokenizerJson.BuildSentencePiece(file) : TokenizerJson.Build(file);
    }

    /// <summary>
    /// Token ids of <paramref name="text"/> with the template's special tokens around it. When the
    /// result would exceed <paramref name="maxLength"/>, the text's tokens are cut at the end so the
    /// special tokens still fit.
    /// </summary>
    public int[] Encode(string text, int maxLength = int.MaxValue)
    {
        ArgumentNullException.ThrowIfNull(text);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxLength, Prefix.Count + Suffix.Count + 1);
        var body = EncodeWithoutSpecialTokens(text);
        int keep = Math.Min(body.Length, maxLength - Prefix.Count - Suffix.Count);
        var ids = new int[Prefix.Count + keep + Suffix.Count];
        int at = 0;
        foreach (int id in Prefix)
        {
            ids[at++] = id;
        }
        body.AsSpan(0, keep).CopyTo(ids.AsSpan(at));
        at += keep;
        foreach (int id in Suffix)
        {
            ids[at++] = id;
        }
        return ids;
    }

    /// <summary>Token ids of <paramref name="text"/> alone, without special tokens.</summary>
    public int[] EncodeWithoutSpecialTokens(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (_addPrefixSpace && text.Length > 0 && !char.IsWhiteSpace(text[0]))
        {
            text = " " + text;
        }
        var ids = Inner is BertTokenizer bert
            ? bert.EncodeToIds(text, addSpecialTokens: false, considerPreTokenization: true, considerNormalization: true)
            : Inner.EncodeToIds(text);
        return [.. ids];
    }

    /// <summary>The text of <paramref name="ids"/>.</summary>
    public string Decode(IEnumerable<int> ids) => Inner.Decode(ids);
}
