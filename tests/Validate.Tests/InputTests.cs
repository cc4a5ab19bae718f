using OnnxLora.Core;
using OnnxLora.Validate.Internals;

namespace OnnxLora.Validate.Tests;

[TestClass]
public sealed class InputTests
{
    private static Dictionary<string, InputTensor> Capture(TestFiles f, ValidationOptions options, string? merged = null, string? unmerged = null)
    {
        Dictionary<string, InputTensor>? seen = null;
        var request = new ValidationRequest(merged ?? f.Merged(), unmerged ?? f.Unmerged())
        {
            EagerReference = inputs =>
            {
                seen = inputs.ToDictionary(kv => kv.Key, kv => kv.Value);
                return new Dictionary<string, float[]>();
            },
        };
        Validator.Run(request, options);
        return seen!;
    }

    [TestMethod]
    public void Generate_RightPadding_MaskIdsAndPositionsFollowTheDocumentedRule()
    {
        using var f = new TestFiles();
        string[] extra = ["position_ids", "token_type_ids"];
        string merged = f.Merged(g => g with { ExtraInputs = extra });
        string unmerged = f.Unmerged(g => g with { ExtraInputs = extra });
        var options = TestFiles.Cpu with { Batch = 3, Sequence = 8, Padding = PaddingSide.Right, PadTokenId = 7, Seed = 5 };

        var inputs = Capture(f, options, merged, unmerged);

        var mask = inputs["attention_mask"].GetData<long>().ToArray();
        var ids = inputs["input_ids"].GetData<long>().ToArray();
        var positions = inputs["position_ids"].GetData<long>().ToArray();
        CollectionAssert.AreEqual(new long[] { 3, 8 }, inputs["input_ids"].Shape.ToArray());
        for (int b = 0; b < 3; b++)
        {
            int pad = (b + 1) * 8 / 6; // 1, 2, 4
            for (int s = 0; s < 8; s++)
            {
                int i = b * 8 + s;
                bool padded = s >= 8 - pad;
                Assert.AreEqual(padded ? 0L : 1L, mask[i], $"mask[{b},{s}]");
                if (padded)
                {
                    Assert.AreEqual(7L, ids[i]);
                    Assert.AreEqual(1L, positions[i]);
                }
                else
                {
                    Assert.IsTrue(ids[i] >= 0 && ids[i] < f.Lm.Vocab);
                    Assert.AreEqual(s, positions[i]);
                }
            }
        }
        Assert.IsTrue(inputs["token_type_ids"].GetData<long>().ToArray().All(x => x == 0));
    }

    [TestMethod]
    public void Generate_LeftPadding_PadsTheStartAndShiftsPositions()
    {
        using var f = new TestFiles();
        string[] extra = ["position_ids"];
        var options = TestFiles.Cpu with { Batch = 2, Sequence = 4, Padding = PaddingSide.Left };

        var inputs = Capture(f, options, f.Merged(g => g with { ExtraInputs = extra }), f.Unmerged(g => g with { ExtraInputs = extra }));

        // Row 0 pads (1·4)/4 = 1, row 1 pads (2·4)/4 = 2, at the start.
        CollectionAssert.AreEqual(new long[] { 0, 1, 1, 1, 0, 0, 1, 1 }, inputs["attention_mask"].GetData<long>().ToArray());
        CollectionAssert.AreEqual(new long[] { 1, 0, 1, 2, 1, 1, 0, 1 }, inputs["position_ids"].GetData<long>().ToArray());
    }

    [TestMethod]
    public void Generate_SameSeed_GivesSameIds_OtherSeedDiffers()
    {
        using var f = new TestFiles();
        var a = Capture(f, TestFiles.Cpu with { Seed = 1 })["input_ids"].GetData<long>().ToArray();
        var b = Capture(f, TestFiles.Cpu with { Seed = 1 })["input_ids"].GetData<long>().ToArray();
        var c = Capture(f, TestFiles.Cpu with { Seed = 2 })["input_ids"].GetData<long>().ToArray();

        CollectionAssert.AreEqual(a, b);
        CollectionAssert.AreNotEqual(a, c);
        Assert.IsTrue(Capture(f, TestFiles.Cpu)["attention_mask"].GetData<long>().ToArray().All(x => x == 1));
    }

    [TestMethod]
    public void Generate_VocabSize_ComesFromOptionLogitsDimOrEmbedding()
    {
        using var f = new TestFiles(vocab: 40);
        var fromLogits = Validator.Run(new ValidationRequest(f.Merged(), f.Unmerged()), TestFiles.Cpu);
        Assert.AreEqual(40L, fromLogits.Inputs.VocabSize);
        Assert.AreEqual("last dimension of output logits", fromLogits.Inputs.VocabSource);

        // No output named logits: the rows of the embedding that input_ids indexes give the vocabulary.
        string merged = f.Merged(g => g with { FixedVocabDim = false, OutputName = "scores" }, "sym-m.onnx");
        string unmerged = f.Unmerged(g => g with { FixedVocabDim = false, OutputName = "scores" }, "sym-u.onnx");
        var fromEmbedding = Validator.Run(new ValidationRequest(merged, unmerged), TestFiles.Cpu);
        Assert.AreEqual(40L, fromEmbedding.Inputs.VocabSize);
        StringAssert.Contains(fromEmbedding.Inputs.VocabSource!, "embedding initializer");
        Assert.IsNull(fromEmbedding.Comparisons[0].Outputs[0].Top1Agreement, "top-1 is only measured on the logits output");

        var ids = Capture(f, TestFiles.Cpu with { VocabSize = 3, Batch = 4, Sequence = 50 })["input_ids"].GetData<long>().ToArray();
        Assert.IsTrue(ids.All(x => x is >= 0 and < 3));
        CollectionAssert.AreEquivalent(new long[] { 0, 1, 2 }, ids.Distinct().ToArray());
    }

    [TestMethod]
    public void ResolveShape_SymbolicDims_UseOptionsOverridesAndRules()
    {
        var options = TestFiles.Cpu with { Batch = 3, Sequence = 9, Dims = new Dictionary<string, long> { ["heads"] = 4 } };
        var sig = new TensorSignature("past_key_values.0.key", DType.F32, ["batch_size", "heads", "past_sequence_length", "64"]);

        CollectionAssert.AreEqual(new long[] { 3, 4, 0, 64 }, InputBuilder.ResolveShape(sig, "m.onnx", options));
        CollectionAssert.AreEqual(new long[] { 3, 9 }, InputBuilder.ResolveShape(new TensorSignature("x", DType.I64, ["?", "?"]), "m.onnx", options));

        var e = BadInput.Throws(() =>
            InputBuilder.ResolveShape(new TensorSignature("x", DType.F32, ["channels"]), "m.onnx", options));
        StringAssert.Contains(e.Message, "'channels'");
        StringAssert.Contains(e.Message, "input x");
        StringAssert.Contains(e.Message, "--dim channels=N");
    }

    [TestMethod]
    public void Run_JsonInputs_AreUsedAndReported()
    {
        using var f = new TestFiles();
        string json = f.JsonInputs([[1, 2, 3]], [[1, 1, 0]]);

        var inputs = Capture(f, TestFiles.Cpu with { InputFiles = [json] });

        CollectionAssert.AreEqual(new long[] { 1, 2, 3 }, inputs["input_ids"].GetData<long>().ToArray());
        CollectionAssert.AreEqual(new long[] { 1, 3 }, inputs["attention_mask"].Shape.ToArray());
        Assert.AreEqual($"json: {json}", inputs["input_ids"].Source);
    }

    [TestMethod]
    public void Run_InputFilesMissingADeclaredInput_ThrowsNamingTheInput()
    {
        using var f = new TestFiles();
        string json = f.File("ids.json");
        File.WriteAllText(json, "{\"input_ids\": [[1, 2]]}");
        string merged = f.Merged();

        var e = BadInput.Throws(() =>
            Validator.Run(new ValidationRequest(merged, f.Unmerged()), TestFiles.Cpu with { InputFiles = [json] }));

        StringAssert.Contains(e.Message, "input attention_mask: not supplied");
        StringAssert.Contains(e.Message, merged);
        StringAssert.Contains(e.Message, "input_ids");
    }

    [TestMethod]
    [DataRow("{\"input_ids\": [[1, 2], [3]], \"attention_mask\": [[1, 1], [1, 1]]}", "input input_ids[1]: found 1 elements, expected 2 (the array is ragged)")]
    [DataRow("{\"input_ids\": [[1, 2.5]], \"attention_mask\": [[1, 1]]}", "input input_ids element 1: found 2.5, expected an integer")]
    [DataRow("{\"input_ids\": [[1, \"a\"]], \"attention_mask\": [[1, 1]]}", "input input_ids element 1: found \"a\"")]
    [DataRow("{\"input_idz\": [[1, 2]]}", "input input_idz: found a name no model declares")]
    [DataRow("[1, 2]", "root: found Array, expected an object")]
    [DataRow("{\"input_ids\": [[1, 2]", "not valid JSON")]
    [DataRow("{\"input_ids\": [[1, 2]], \"attention_mask\": [[1, 1, 1]]}", "input input_ids dim 1 ('sequence'): found 2, expected 3 as input attention_mask has it")]
    [DataRow("{\"input_ids\": [1, 2], \"attention_mask\": [[1, 1]]}", "input input_ids shape: found [2], expected rank 2")]
    [DataRow("{\"input_ids\": [[1, 99]], \"attention_mask\": [[1, 1]]}", "input input_ids element 1: found 99, expected a token id in [0, 48)")]
    public void Run_MalformedJsonInputs_AreBadInputNamingFileAndInput(string text, string expected)
    {
        using var f = new TestFiles();
        string json = f.File("bad.json");
        File.WriteAllText(json, text);

        var e = BadInput.Throws(() =>
            Validator.Run(new ValidationRequest(f.Merged(), f.Unmerged()), TestFiles.Cpu with { InputFiles = [json] }));

        StringAssert.StartsWith(e.Message, json);
        StringAssert.Contains(e.Message, expected);
    }

    [TestMethod]
    public void Run_InputFileMissing_IsBadInput()
    {
        using var f = new TestFiles();
        var e = BadInput.Throws(() =>
            Validator.Run(new ValidationRequest(f.Merged(), f.Unmerged()), TestFiles.Cpu with { InputFiles = [f.File("none.json")] }));
        StringAssert.Contains(e.Message, "none.json");
    }
}
