using System.Text;
using System.Text.RegularExpressions;
using OnnxLora.Training.Data;
using OnnxLora.Training.Sample.Internals;

namespace OnnxLora.Training.Tests;

[TestClass]
public sealed class DataTokenizerTests
{
    public TestContext TestContext { get; set; } = null!;

    private static readonly string[] Corpus =
    [
        "Anna sees the red cat in the garden.",
        "The cat is seen by Anna.",
        "Ben finds the big dog at the park.",
        "The dog is found by Ben.",
        "Anna and Ben see the cat and the dog.",
    ];

    [TestMethod]
    public void Load_ByteLevelBpe_EncodesLikeAnIndependentMergeByRankEncoder()
    {
        using var dir = new TrainerTempDir();
        var merges = BpeTrainer.Train(Corpus, 60);
        File.WriteAllBytes(dir.File("tokenizer.json"), SampleTokenizerFiles.TokenizerJson(merges));
        var tok = CheckpointTokenizer.Load(dir.Path);

        foreach (string text in Corpus.Append("Cats & dogs: 42 unseen words!"))
        {
            int[] expected = ReferenceEncode(text, merges);
            int[] actual = tok.EncodeWithoutSpecialTokens(text);
            CollectionAssert.AreEqual(expected, actual, text);
            Assert.AreEqual(text, tok.Decode(actual));
        }
        Assert.IsTrue(merges.Count > 20, "the corpus should yield merges");
    }

    [TestMethod]
    public void Encode_WithTemplate_PutsBosFirstAndCutsTextToMaxLength()
    {
        using var dir = new TrainerTempDir();
        var merges = BpeTrainer.Train(Corpus, 60);
        File.WriteAllBytes(dir.File("tokenizer.json"), SampleTokenizerFiles.TokenizerJson(merges));
        var tok = CheckpointTokenizer.Load(dir.File("tokenizer.json"));

        int[] body = ReferenceEncode(Corpus[0], merges);
        int[] full = tok.Encode(Corpus[0]);
        Assert.AreEqual(SampleTokenizerFiles.BosId, full[0]);
        CollectionAssert.AreEqual(body, full[1..]);

        int[] cut = tok.Encode(Corpus[0], maxLength: 4);
        CollectionAssert.AreEqual(new[] { SampleTokenizerFiles.BosId, body[0], body[1], body[2] }, cut);
    }

    [TestMethod]
    public void Load_WordPieceWithBertLayout_AddsClsAndSepAndSplitsSubwords()
    {
        using var dir = new TrainerTempDir();
        string[] vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "play", "##ing", "##s", ".", "dog"];
        var sb = new StringBuilder();
        sb.Append("{\"version\":\"1.0\",\"added_tokens\":[],");
        sb.Append("\"normalizer\":{\"type\":\"BertNormalizer\",\"clean_text\":true,\"handle_chinese_chars\":true,\"strip_accents\":null,\"lowercase\":true},");
        sb.Append("\"pre_tokenizer\":{\"type\":\"BertPreTokenizer\"},");
        sb.Append("\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"[CLS]\",\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},{\"SpecialToken\":{\"id\":\"[SEP]\",\"type_id\":0}}],");
        sb.Append("\"special_tokens\":{\"[CLS]\":{\"id\":\"[CLS]\",\"ids\":[2],\"tokens\":[\"[CLS]\"]},\"[SEP]\":{\"id\":\"[SEP]\",\"ids\":[3],\"tokens\":[\"[SEP]\"]}}},");
        sb.Append("\"model\":{\"type\":\"WordPiece\",\"unk_token\":\"[UNK]\",\"continuing_subword_prefix\":\"##\",\"max_input_chars_per_word\":100,\"vocab\":{");
        sb.Append(string.Join(",", vocab.Select((t, i) => $"\"{t}\":{i}")));
        sb.Append("}}}");
        File.WriteAllText(dir.File("tokenizer.json"), sb.ToString());

        var tok = CheckpointTokenizer.Load(dir.Path);
        int[] ids = tok.Encode("The cats playing. Dog zebra");
        // [CLS] the cat ##s play ##ing . dog [UNK] [SEP]
        CollectionAssert.AreEqual(new[] { 2, 5, 6, 9, 7, 8, 10, 11, 1, 3 }, ids);
    }

    [TestMethod]
    public void Load_UnigramModel_FailsNamingTheFieldAndTheFile()
    {
        using var dir = new TrainerTempDir();
        File.WriteAllText(dir.File("tokenizer.json"),
            "{\"pre_tokenizer\":null,\"model\":{\"type\":\"Unigram\",\"vocab\":[[\"a\",-1.0]]}}");
        var e = BadInput.Throws(() => CheckpointTokenizer.Load(dir.Path));
        StringAssert.Contains(e.Message, "tokenizer.json");
        StringAssert.Contains(e.Message, "model.type");
        StringAssert.Contains(e.Message, "Unigram");
    }

    [TestMethod]
    public void Load_MalformedJson_FailsNamingTheFile()
    {
        using var dir = new TrainerTempDir();
        File.WriteAllText(dir.File("tokenizer.json"), "{\"model\": {\"type\": \"BPE\", ");
        var e = BadInput.Throws(() => CheckpointTokenizer.Load(dir.Path));
        StringAssert.Contains(e.Message, dir.File("tokenizer.json"));
    }

    [TestMethod]
    public void Load_MissingFile_IsBadInput()
    {
        using var dir = new TrainerTempDir();
        BadInput.Throws(() => CheckpointTokenizer.Load(dir.Path));
    }

    /// <summary>
    /// Byte-level BPE written independently of the library: split with GPT-2's pattern, map bytes to
    /// the printable alphabet, then repeatedly merge the adjacent pair with the lowest rank.
    /// </summary>
    private static int[] ReferenceEncode(string text, IReadOnlyList<(string Left, string Right)> merges)
    {
        var rank = new Dictionary<(string, string), int>();
        for (int i = 0; i < merges.Count; i++)
        {
            rank[merges[i]] = i;
        }
        var ids = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int b = 0; b < 256; b++)
        {
            ids[ByteToChar(b).ToString()] = SampleTokenizerFiles.FirstByteId + b;
        }
        for (int i = 0; i < merges.Count; i++)
        {
            ids[merges[i].Left + merges[i].Right] = SampleTokenizerFiles.FirstByteId + 256 + i;
        }
        var result = new List<int>();
        var pattern = new Regex(@"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+");
        foreach (Match m in pattern.Matches(text))
        {
            var symbols = Encoding.UTF8.GetBytes(m.Value).Select(b => ByteToChar(b).ToString()).ToList();
            while (true)
            {
                int best = -1;
                int bestRank = int.MaxValue;
                for (int i = 0; i + 1 < symbols.Count; i++)
                {
                    if (rank.TryGetValue((symbols[i], symbols[i + 1]), out int r) && r < bestRank)
                    {
                        bestRank = r;
                        best = i;
                    }
                }
                if (best < 0)
                {
                    break;
                }
                symbols[best] += symbols[best + 1];
                symbols.RemoveAt(best + 1);
            }
            result.AddRange(symbols.Select(s => ids[s]));
        }
        return [.. result];
    }

    /// <summary>GPT-2's byte table, written out again: printable ranges keep their code, the rest count up from 256.</summary>
    private static char ByteToChar(int b)
    {
        int next = 256;
        for (int x = 0; x < 256; x++)
        {
            bool printable = (x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255);
            if (x == b)
            {
                return printable ? (char)x : (char)next;
            }
            if (!printable)
            {
                next++;
            }
        }
        throw new ArgumentOutOfRangeException(nameof(b));
    }
}
