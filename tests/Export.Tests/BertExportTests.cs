using OnnxLora.Core;
using OnnxLora.Core.Onnx;
using OnnxLora.Models.Bert;
using OnnxLora.Models.Onnx;

namespace OnnxLora.Export.Tests;

/// <summary>BERT exports run in ONNX Runtime (CPU) against the TorchSharp eager forward.</summary>
[TestClass]
public sealed class BertExportTests
{
    private const double Fp32Tolerance = 1e-4;

    [TestMethod]
    [DataRow(OnnxExportMode.Base, 17)]
    [DataRow(OnnxExportMode.Merged, 17)]
    [DataRow(OnnxExportMode.Unmerged, 17)]
    [DataRow(OnnxExportMode.Unmerged, 21)]
    public void Export_MatchesEager_ForTwoShapesAndAPaddedBatch(OnnxExportMode mode, int opset)
    {
        using var model = TestModels.Bert();
        Assert.IsGreaterThan(0, TestModels.InjectLora(model, TestModels.BertTargets));
        AssertMatchesEager(model, new ExportOptions { Mode = mode, Opset = opset }, adaptersInExpected: mode != OnnxExportMode.Base);
    }

    [TestMethod]
    public void Export_Opset20_UsesTheGeluOperator_Opset17_UsesErf()
    {
        using var model = TestModels.Bert();
        var at17 = OnnxExporter.BuildModel(model, new ExportOptions { Mode = OnnxExportMode.Base, Opset = 17 });
        var at20 = OnnxExporter.BuildModel(model, new ExportOptions { Mode = OnnxExportMode.Base, Opset = 20 });

        Assert.IsTrue(at17.Graph.Node.Any(n => n.OpType == "Erf"));
        Assert.IsFalse(at17.Graph.Node.Any(n => n.OpType == "Gelu"));
        Assert.IsTrue(at20.Graph.Node.Any(n => n.OpType == "Gelu"));
        Assert.AreEqual(9L, at20.IrVersion);
        AssertMatchesEager(model, new ExportOptions { Mode = OnnxExportMode.Base, Opset = 20 }, adaptersInExpected: false);
    }

    [TestMethod]
    public void MergedAndUnmerged_AgreeWithEachOther()
    {
        using var model = TestModels.Bert(seed: 22);
        TestModels.InjectLora(model, ["query", "value"], rank: 2, alpha: 4, dora: true);
        using var merged = OrtRunner.FromBytes(OnnxFile.ToBytes(OnnxExporter.BuildModel(model, new ExportOptions { Mode = OnnxExportMode.Merged })));
        using var unmerged = OrtRunner.FromBytes(OnnxFile.ToBytes(OnnxExporter.BuildModel(model, new ExportOptions { Mode = OnnxExportMode.Unmerged })));
        long[] ids = TestModels.Ids(2, 10, 64, 4);
        long[] mask = TestModels.PaddedMask(10);

        float[] a = merged.Run("last_hidden_state", ("input_ids", ids, [2, 10]), ("attention_mask", mask, [2, 10]), ("token_type_ids", new long[20], [2, 10])).Data;
        float[] b = unmerged.Run("last_hidden_state", ("input_ids", ids, [2, 10]), ("attention_mask", mask, [2, 10]), ("token_type_ids", new long[20], [2, 10])).Data;
        Assert.IsLessThan(Fp32Tolerance, Reference.MaxAbsDiff(a, b));
    }

    [TestMethod]
    public void Export_TokenTypeIdsInput_MatchesEagerWithThoseTypes()
    {
        using var model = TestModels.Bert();
        var proto = OnnxExporter.BuildModel(model, new ExportOptions { Mode = OnnxExportMode.Base, TokenTypeIdsInput = true });
        CollectionAssert.AreEqual(new[] { "input_ids", "attention_mask", "token_type_ids" }, proto.Graph.Input.Select(i => i.Name).ToArray());
        using var ort = OrtRunner.FromBytes(OnnxFile.ToBytes(proto));
        long[] ids = TestModels.Ids(2, 4, 64, 5);
        long[] mask = TestModels.Ones(2, 4);
        long[] types = [0, 0, 1, 1, 0, 1, 1, 1];

        float[] actual = ort.Run("last_hidden_state", ("input_ids", ids, [2, 4]), ("attention_mask", mask, [2, 4]), ("token_type_ids", types, [2, 4])).Data;
        float[] expected;
        using (var scope = TorchSharp.torch.NewDisposeScope())
        {
            expected = model.forward(TorchSharp.torch.tensor(ids, [2, 4]), TorchSharp.torch.tensor(mask, [2, 4]), TorchSharp.torch.tensor(types, [2, 4]))
                .contiguous().data<float>().ToArray();
        }
        Assert.IsLessThan(Fp32Tolerance, Reference.MaxAbsDiff(actual, expected));
    }

    [TestMethod]
    public void Export_Fp16_IsFiniteAndClose()
    {
        using var model = TestModels.Bert();
        TestModels.InjectLora(model, TestModels.BertTargets);
        using var ort = OrtRunner.FromBytes(OnnxFile.ToBytes(OnnxExporter.BuildModel(model, new ExportOptions { WeightType = DType.F16 })));
        long[] ids = TestModels.Ids(2, 8, 64, 6);
        long[] mask = TestModels.PaddedMask(8);

        float[] actual = ort.Run("last_hidden_state", ("input_ids", ids, [2, 8]), ("attention_mask", mask, [2, 8]), ("token_type_ids", new long[16], [2, 8])).Data;
        float[] expected = TestModels.Eager(model, ids, mask, 2, 8);
        Assert.IsTrue(actual.All(float.IsFinite));
        Assert.IsLessThan(LlamaExportTests.Fp16Tolerance, Reference.MaxAbsDiff(actual, expected));
    }

    [TestMethod]
    public void Export_BertModel_OutputsPoolerOutput_AndTokenTypeIdsFollowTypeVocabSize()
    {
        using var model = TestModels.Bert();
        var proto = OnnxExporter.BuildModel(model, new ExportOptions { Mode = OnnxExportMode.Base });
        CollectionAssert.AreEqual(new[] { "input_ids", "attention_mask", "token_type_ids" }, proto.Graph.Input.Select(i => i.Name).ToArray());
        CollectionAssert.AreEqual(new[] { "last_hidden_state", "pooler_output" }, proto.Graph.Output.Select(o => o.Name).ToArray());
        using var ort = OrtRunner.FromBytes(OnnxFile.ToBytes(proto));
        long[] ids = TestModels.Ids(2, 6, 64, 9);
        long[] mask = TestModels.PaddedMask(6);
        long[] types = [0, 0, 0, 1, 1, 1, 0, 0, 1, 1, 1, 1];

        var (actual, shape) = ort.Run("pooler_output", ("input_ids", ids, [2, 6]), ("attention_mask", mask, [2, 6]), ("token_type_ids", types, [2, 6]));

        CollectionAssert.AreEqual(new long[] { 2, 32 }, shape);
        using var scope = TorchSharp.torch.NewDisposeScope();
        float[] expected = model.Pool(model.forward(TorchSharp.torch.tensor(ids, [2, 6]), TorchSharp.torch.tensor(mask, [2, 6]), TorchSharp.torch.tensor(types, [2, 6])))
            .contiguous().data<float>().ToArray();
        Assert.IsLessThan(Fp32Tolerance, Reference.MaxAbsDiff(actual, expected));

        using var single = new BertModel(Models.TinyConfigs.Bert() with { TypeVocabSize = 1 });
        var one = OnnxExporter.BuildModel(single, new ExportOptions { Mode = OnnxExportMode.Base });
        CollectionAssert.AreEqual(new[] { "input_ids", "attention_mask" }, one.Graph.Input.Select(i => i.Name).ToArray());
    }

    [TestMethod]
    [DataRow(OnnxExportMode.Merged)]
    [DataRow(OnnxExportMode.Unmerged)]
    public void Export_SequenceClassifier_LogitsMatchEager(OnnxExportMode mode)
    {
        using var model = new BertForSequenceClassification(TestModels.Bert(), numLabels: 3, seed: 8);
        TestModels.InjectLora(model, TestModels.BertTargets);
        model.eval();
        var proto = OnnxExporter.BuildModel(model, new ExportOptions { Mode = mode });
        CollectionAssert.AreEqual(new[] { "logits" }, proto.Graph.Output.Select(o => o.Name).ToArray());
        Assert.IsTrue(proto.Graph.Initializer.Any(i => i.Name == "classifier.weight"));
        using var ort = OrtRunner.FromBytes(OnnxFile.ToBytes(proto));
        long[] ids = TestModels.Ids(2, 5, 64, 3);
        long[] mask = TestModels.PaddedMask(5);
        long[] types = [0, 0, 1, 1, 1, 0, 1, 1, 1, 1];

        var (actual, shape) = ort.Run("logits", ("input_ids", ids, [2, 5]), ("attention_mask", mask, [2, 5]), ("token_type_ids", types, [2, 5]));

        CollectionAssert.AreEqual(new long[] { 2, 3 }, shape);
        using var scope = TorchSharp.torch.NewDisposeScope();
        using var noGrad = TorchSharp.torch.no_grad();
        float[] expected = model.forward(TorchSharp.torch.tensor(ids, [2, 5]), TorchSharp.torch.tensor(mask, [2, 5]), TorchSharp.torch.tensor(types, [2, 5]))
            .contiguous().data<float>().ToArray();
        Assert.IsLessThan(Fp32Tolerance, Reference.MaxAbsDiff(actual, expected));
    }

    private static void AssertMatchesEager(BertModel model, ExportOptions options, bool adaptersInExpected)
    {
        using var ort = OrtRunner.FromBytes(OnnxFile.ToBytes(OnnxExporter.BuildModel(model, options)));
        TestModels.SetAdapters(model, adaptersInExpected);
        try
        {
            foreach (var (batch, seq, padded) in new[] { (1, 5, false), (3, 9, false), (2, 7, true) })
            {
                long[] ids = TestModels.Ids(batch, seq, 64, batch * 100 + seq);
                long[] mask = padded ? TestModels.PaddedMask(seq) : TestModels.Ones(batch, seq);
                var (actual, shape) = ort.Run("last_hidden_state", ("input_ids", ids, [batch, seq]), ("attention_mask", mask, [batch, seq]), ("token_type_ids", new long[batch * seq], [batch, seq]));
                CollectionAssert.AreEqual(new long[] { batch, seq, 32 }, shape);
                float[] expected = TestModels.Eager(model, ids, mask, batch, seq);
                double diff = Reference.MaxAbsDiff(actual, expected);
                Assert.IsLessThan(Fp32Tolerance, diff, $"({batch}, {seq}{(padded ? ", padded" : "")}): max |ORT − eager| = {diff}");
            }
        }
        finally
        {
            TestModels.SetAdapters(model, true);
        }
    }
}
