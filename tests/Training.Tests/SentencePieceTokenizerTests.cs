using Google.Protobuf;
using OnnxLora.Training.Data;

namespace OnnxLora.Training.Tests;

/// <summary>
/// A checkpoint folder with only a SentencePiece tokenizer.model (LLaMA-2 style). No real model file can be
/// downloaded here and no NuGet package served ships one, so the tests write a tiny BPE ModelProto themselves
/// from the public field numbers of sentencepiece_model.proto; the expected ids are worked out by hand from
/// SentencePiece's BPE rule (merge the adjacent pair whose joined piece has the highest score, until none is in
/// the vocabulary).
/// </summary>
[TestClass]
public sealed class SentencePieceTokenizerTests
{
    // Piece ids: 0 <unk>, 1 <s>, 2 </s>, 3 ▁, 4 h, 5 e, 6 l, 7 o, 8 ▁h, 9 ll.
    private static readonly (string Piece, float Score, int Type)[] Pieces =
    [
        ("<unk>", 0, Unknown), ("<s>", 0, Control), ("</s>", 0, Control),
        ("\u2581", -1, Normal), ("h", -2, Normal), ("e", -3, Normal), ("l", -4, Normal), ("o", -5, Normal),
        ("\u2581h", -0.5f, Normal), ("ll", -0.6f, Normal),
    ];

    [TestMethod]
    public void Load_FolderWithOnlyTokenizerModel_EncodesWithBosAndSentencePieceBpe()
    {
        using var dir = new TrainerTempDir();
        File.WriteAllBytes(dir.File("tokenizer.model"), TinyBpeModel());
        Assert.IsTrue(CheckpointTokenizer.Exists(dir.Path));
        var tok = CheckpointTokenizer.Load(dir.Path);

        // "hello" → "▁hello" → ▁ h e l l o → merge ▁h (score −0.5) → merge ll (−0.6) → ▁h e ll o.
        CollectionAssert.AreEqual(new[] { 1, 8, 5, 9, 7 }, tok.Encode("hello"));
        // 'x' is not a piece and the model has no byte fallback: it becomes <unk>.
        CollectionAssert.AreEqual(new[] { 8, 5, 0 }, tok.EncodeWithoutSpecialTokens("hex"));
    }

    [TestMethod]
    public void Read_TextLinesOnSentencePieceCheckpoint_TokenizeWithTheModel()
    {
        using var dir = new TrainerTempDir();
        File.WriteAllBytes(dir.File("tokenizer.model"), TinyBpeModel());
        File.WriteAllText(dir.File("data.jsonl"), "{\"text\": \"hello\"}\n");
        var examples = JsonlDataset.Read(dir.File("data.jsonl"), TrainingTask.CausalLanguageModeling, CheckpointTokenizer.Load(dir.Path),
            vocabSize: Pieces.Length, maxLength: 16);
        CollectionAssert.AreEqual(new long[] { 1, 8, 5, 9, 7 }, examples.Single().InputIds.Select(i => (long)i).ToArray());
    }

    [TestMethod]
    public void Load_TokenizerModelThatIsNotProtobuf_FailsNamingTheFile()
    {
        using var dir = new TrainerTempDir();
        File.WriteAllBytes(dir.File("tokenizer.model"), [0xFF, 0xFF, 0xFF, 0xFF, 0x0F]);
        var e = BadInput.Throws(() => CheckpointTokenizer.Load(dir.Path));
        StringAssert.Contains(e.Message, "tokenizer.model");
    }

    private const int Normal = 1, Unknown = 2, Control = 3;

    /// <summary>
    /// ModelProto: pieces = 1 (SentencePiece: piece = 1, score = 2, type = 3), trainer_spec = 2 (model_type = 3 with
    /// BPE = 2, vocab_size = 4, byte_fallback = 35, unk_id = 40, bos_id = 41, eos_id = 42, pad_id = 43),
    /// normalizer_spec = 3 (name = 1, add_dummy_prefix = 3, remove_extra_whitespaces = 4, escape_whitespaces = 5).
    /// </summary>
    private static byte[] TinyBpeModel()
    {
        using var stream = new MemoryStream();
        var output = new CodedOutputStream(stream);
        foreach (var (piece, score, type) in Pieces)
        {
            WriteMessage(output, 1, o =>
            {
                o.WriteTag(1, WireFormat.WireType.LengthDelimited);
                o.WriteString(piece);
                o.WriteTag(2, WireFormat.WireType.Fixed32);
                o.WriteFloat(score);
                o.WriteTag(3, WireFormat.WireType.Varint);
                o.WriteEnum(type);
            });
        }
        WriteMessage(output, 2, o =>
        {
            WriteVarint(o, 3, 2);
            WriteVarint(o, 4, Pieces.Length);
            WriteVarint(o, 35, 0);
            WriteVarint(o, 40, 0);
            WriteVarint(o, 41, 1);
            WriteVarint(o, 42, 2);
            WriteVarint(o, 43, -1);
        });
        WriteMessage(output, 3, o =>
        {
            o.WriteTag(1, WireFormat.WireType.LengthDelimited);
            o.WriteString("identity");
            WriteVarint(o, 3, 1);
            WriteVarint(o, 4, 1);
            WriteVarint(o, 5, 1);
        });
        output.Flush();
        return stream.ToArray();
    }

    private static void WriteVarint(CodedOutputStream o, int field, int value)
    {
        o.WriteTag(field, WireFormat.WireType.Varint);
        o.WriteInt32(value);
    }

    private static void WriteMessage(CodedOutputStream output, int field, Action<CodedOutputStream> body)
    {
        using var inner = new MemoryStream();
        var o = new CodedOutputStream(inner);
        body(o);
        o.Flush();
        output.WriteTag(field, WireFormat.WireType.LengthDelimited);
        output.WriteBytes(ByteString.CopyFrom(inner.ToArray()));
    }
}
