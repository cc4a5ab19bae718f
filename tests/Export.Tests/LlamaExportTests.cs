using OnnxLora.Core;
using OnnxLora.Core.Onnx;
using OnnxLora.Models;
using OnnxLora.Models.Llama;
using OnnxLora.Models.Lora;
using OnnxLora.Models.Onnx;

namespace OnnxLora.Export.Tests;

/// <summary>LLaMA-family exports run in ONNX Runtime (CPU) against the TorchSharp eager forward.</summary>
[TestClass]
public sealed class LlamaExportTests
{
    private const double Fp32Tolerance = 1e-4;

    [TestMethod]
    [DataRow(OnnxExportMode.Base, 17)]
    [DataRow(OnnxExportMode.Merged, 17)]
    [DataRow(OnnxExportMode.Unmerged, 17)]
    [DataRow(OnnxExportMode.Merged, 21)]
    [DataRow(OnnxExportMode.Unmerged, 21)]
    public void Export_MatchesEager_ForTwoShapesAndAPaddedBatch(OnnxExportMode mode, int opset)
    {
        using var model = TestModels.Llama();
        Assert.AreEqual(14, TestModels.InjectLora(model, TestModels.LlamaTargets));
        var options = new ExportOptions { Mode = mode, Opset = opset };

        AssertMatchesEager(model, options, adaptersInExpected: mode != OnnxExportMode.Base);
    }

    [TestMethod]
    public void MergedAndUnmerged_AgreeWithEachOther()
    {
        using var model = TestModels.Llama(seed: 21);
        TestModels.InjectLora(model, TestModels.LlamaTargets, rank: 8, alpha: 16);
        using var merged = OrtRunner.FromBytes(OnnxFile.ToBytes(OnnxExporter.BuildModel(model, new ExportOptions { Mode = OnnxExportMode.Merged })));
        using var unmerged = OrtRunner.FromBytes(OnnxFile.ToBytes(OnnxExporter.BuildModel(model, new ExportOptions { Mode = OnnxExportMode.Unmerged })));
        long[] ids = TestModels.Ids(2, 9, model.Config.VocabSize, 3);
        long[] mask = TestModels.Ones(2, 9);

        float[] a = merged.Run("logits", ("input_ids", ids, [2, 9]), ("attention_mask", mask, [2, 9])).Data;
        float[] b = unmerged.Run("logits", ("input_ids", ids, [2, 9]), ("attention_mask", mask, [2, 9])).Data;
        Assert.IsLessThan(Fp32Tolerance, Reference.MaxAbsDiff(a, b));
        TestModels.SetAdapters(model, false);
        float[] baseline = TestModels.Eager(model, ids, mask, 2, 9);
        Assert.IsGreaterThan(1e-2, Reference.MaxAbsDiff(a, baseline), "the adapter must change the output, or this test proves nothing");
    }

    [TestMethod]
    [DataRow(OnnxExportMode.Merged)]
    [DataRow(OnnxExportMode.Unmerged)]
    public void Export_WithDora_MatchesEager(OnnxExportMode mode)
    {
        using var model = TestModels.Llama(seed: 31);
        TestModels.InjectLora(model, ["q_proj", "v_proj", "down_proj"], dora: true);
        AssertMatchesEager(model, new ExportOptions { Mode = mode }, adaptersInExpected: true);
    }

    [TestMethod]
    [DataRow(OnnxExportMode.Merged)]
    [DataRow(OnnxExportMode.Unmerged)]
    public void Export_WithLoraOnEmbeddingAndTiedHead_MatchesEager(OnnxExportMode mode)
    {
        // Qwen2: q/k/v bias, tied embeddings (the head keeps the base embedding), 1 kv head.
        using var model = TestModels.Llama(TinyConfigs.Qwen2() with { NumKeyValueHeads = 1 }, seed: 41);
        TestModels.InjectLora(model, ["embed_tokens", "q_proj", "up_proj"]);
        AssertMatchesEager(model, new ExportOptions { Mode = mode }, adaptersInExpected: true);
    }

    [TestMethod]
    public void Export_TiedHead_ReusesTheEmbeddingInitializer()
    {
        using var model = TestModels.Llama(TinyConfigs.Qwen2(), seed: 42);
        var proto = OnnxExporter.BuildModel(model, new ExportOptions { Mode = OnnxExportMode.Base });

        var names = proto.Graph.Initializer.Select(t => t.Name).ToHashSet();
        Assert.Contains("model.embed_tokens.weight", names);
        Assert.DoesNotContain("lm_head.weight", names);
        Assert.IsTrue(proto.Graph.Node.Any(n => n.OpType == "Transpose" && n.Input[0] == "model.embed_tokens.weight"));
        AssertMatchesEager(model, new ExportOptions { Mode = OnnxExportMode.Base }, adaptersInExpected: false);
    }

    [TestMethod]
    public void Export_SlidingWindowAndBiases_MatchEager()
    {
        using var model = TestModels.Llama(TinyConfigs.Llama() with { ModelType = "mistral", SlidingWindow = 3, AttentionBias = true, MlpBias = true }, seed: 51);
        AssertMatchesEager(model, new ExportOptions { Mode = OnnxExportMode.Base }, adaptersInExpected: false);
    }

    [TestMethod]
    public void Export_InitializerNamesAreTheHuggingFaceParameterNames()
    {
        using var model = TestModels.Llama();
        var proto = OnnxExporter.BuildModel(model, new ExportOptions { Mode = OnnxExportMode.Base });

        var parameters = model.named_parameters().Select(p => p.name).ToHashSet();
        var weights = proto.Graph.Initializer.Select(t => t.Name).Where(n => n.EndsWith(".weight", StringComparison.Ordinal) || n.EndsWith(".bias", StringComparison.Ordinal)).ToHashSet();
        CollectionAssert.AreEquivalent(parameters.ToList(), weights.ToList());
        var q = proto.Graph.Initializer.Single(t => t.Name == "model.layers.0.self_attn.q_proj.weight");
        CollectionAssert.AreEqual(new long[] { 32, 32 }, q.Dims.ToArray());
        var k = proto.Graph.Initializer.Single(t => t.Name == "model.layers.0.self_attn.k_proj.weight");
        CollectionAssert.AreEqual(new long[] { 32, 16 }, k.Dims.ToArray(), "stored transposed: [in, out]");
        CollectionAssert.AreEqual(new[] { "input_ids", "attention_mask" }, proto.Graph.Input.Select(i => i.Name).ToArray());
        Assert.AreEqual("logits", proto.Graph.Output.Single().Name);
        var dims = proto.Graph.Output.Single().Type.TensorType.Shape.Dim;
        Assert.AreEqual("batch", dims[0].DimParam);
        Assert.AreEqual("sequence", dims[1].DimParam);
        Assert.AreEqual(64L, dims[2].DimValue);
    }

    [TestMethod]
    public void Export_Unmerged_StoresAdaptersUnderPeftKeys()
    {
        using var model = TestModels.Llama();
        TestModels.InjectLora(model, ["q_proj"], rank: 4);
        var proto = OnnxExporter.BuildModel(model, new ExportOptions { Mode = OnnxExportMode.Unmerged });

        var a = proto.Graph.Initializer.Single(t => t.Name == "base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight");
        var b = proto.Graph.Initializer.Single(t => t.Name == "base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight");
        CollectionAssert.AreEqual(new long[] { 32, 4 }, a.Dims.ToArray(), "Aᵀ [in, r]");
        CollectionAssert.AreEqual(new long[] { 4, 32 }, b.Dims.ToArray(), "Bᵀ [r, out]");
        Assert.IsTrue(proto.Graph.Initializer.Any(t => t.Name == "model.layers.1.self_attn.q_proj.weight"));
        Assert.IsTrue(proto.Graph.Node.Any(n => n.Name.StartsWith("/model/layers.1/self_attn/q_proj/", StringComparison.Ordinal)));
    }

    [TestMethod]
    public void Export_PositionIdsInput_MatchesEagerWithThosePositions()
    {
        using var model = TestModels.Llama();
        var proto = OnnxExporter.BuildModel(model, new ExportOptions { Mode = OnnxExportMode.Base, PositionIdsInput = true });
        using var ort = OrtRunner.FromBytes(OnnxFile.ToBytes(proto));
        const int batch = 2, seq = 5;
        long[] ids = TestModels.Ids(batch, seq, 64, 8);
        long[] mask = [0, 0, 1, 1, 1, 1, 1, 1, 1, 1];
        long[] positions = [0, 0, 0, 1, 2, 0, 1, 2, 3, 4];

        float[] actual = ort.Run("logits", ("input_ids", ids, [batch, seq]), ("attention_mask", mask, [batch, seq]), ("position_ids", positions, [batch, seq])).Data;
        float[] expected;
        using (var scope = TorchSharp.torch.NewDisposeScope())
        {
            expected = model.forward(TorchSharp.torch.tensor(ids, [batch, seq]), TorchSharp.torch.tensor(mask, [batch, seq]), TorchSharp.torch.tensor(positions, [batch, seq]))
                .contiguous().data<float>().ToArray();
        }
        Assert.IsLessThan(Fp32Tolerance, Reference.MaxAbsDiff(actual, expected));
    }

    [TestMethod]
    [DataRow(OnnxExportMode.Base)]
    [DataRow(OnnxExportMode.Merged)]
    [DataRow(OnnxExportMode.Unmerged)]
    public void Export_Fp16_MatchesEagerWithFp16RoundedWeights(OnnxExportMode mode)
    {
        using var model = TestModels.Llama();
        TestModels.InjectLora(model, TestModels.LlamaTargets);

        AssertFp16MatchesRoundedEager(model, mode, activationScale: 1);
    }

    /// <summary>
    /// Residual-stream activations of magnitude ~300: x² (~9·10⁴) is past fp16's largest finite value (65504), so only
    /// RMSNorm's fp32 upcast (Pow, ReduceMean, Sqrt, Div in fp32, then cast back) keeps the logits finite and right.
    /// </summary>
    [TestMethod]
    [DataRow(OnnxExportMode.Base)]
    [DataRow(OnnxExportMode.Merged)]
    public void Export_Fp16_ActivationsScaled300_StayFiniteThroughRmsNormUpcast(OnnxExportMode mode)
    {
        using var model = TestModels.Llama(seed: 13);
        TestModels.InjectLora(model, TestModels.LlamaTargets);
        using (TorchSharp.torch.no_grad())
        {
            // Unit-RMS embedding rows, then ×300.
            var embedding = model.Model.EmbeddingWeight;
            embedding.copy_(embedding / embedding.square().mean([1], keepdim: true).sqrt() * 300);
        }

        AssertFp16MatchesRoundedEager(model, mode, activationScale: 300);
    }

    /// <summary>
    /// The ×300 case on the CUDA provider, which has fp16 kernels for Pow / ReduceMean / Sqrt: there the fp32 upcast is
    /// what keeps x² finite. (ONNX Runtime's CPU provider lacks fp16 kernels for those operators and casts them to fp32
    /// itself, so on the CPU the structure test below is what catches a missing upcast.)
    /// </summary>
    [TestMethod]
    [TestCategory("GPU")]
    public void Export_Fp16_ActivationsScaled300_OnCuda_StayFiniteThroughRmsNormUpcast()
    {
        using var model = TestModels.Llama(seed: 13);
        TestModels.InjectLora(model, TestModels.LlamaTargets);
        using (TorchSharp.torch.no_grad())
        {
            var embedding = model.Model.EmbeddingWeight;
            embedding.copy_(embedding / embedding.square().mean([1], keepdim: true).sqrt() * 300);
        }

        AssertFp16MatchesRoundedEager(model, OnnxExportMode.Merged, activationScale: 300, onCuda: true);
    }

    /// <summary>
    /// In an fp16 export every RMSNorm squares, averages and divides fp32 values: each Pow reads a Cast to float of the
    /// fp16 activation with an fp32 exponent, and the normalised result is cast back to fp16 before the weight.
    /// </summary>
    [TestMethod]
    public void Export_Fp16_RmsNormStatisticsAreComputedInFp32()
    {
        using var model = TestModels.Llama();
        var proto = OnnxExporter.BuildModel(model, new ExportOptions { Mode = OnnxExportMode.Base, WeightType = DType.F16 });
        var producers = proto.Graph.Node.SelectMany(n => n.Output.Select(o => (Output: o, Node: n))).ToDictionary(p => p.Output, p => p.Node);
        var consumers = proto.Graph.Node.SelectMany(n => n.Input.Select(i => (Input: i, Node: n))).ToLookup(p => p.Input, p => p.Node);
        var constants = proto.Graph.Initializer.ToDictionary(t => t.Name);
        const int Float = (int)Onnx.TensorProto.Types.DataType.Float, Float16 = (int)Onnx.TensorProto.Types.DataType.Float16;
        static long CastTo(Onnx.NodeProto n) => n.Attribute.Single(a => a.Name == "to").I;

        var pows = proto.Graph.Node.Where(n => n.OpType == "Pow").ToList();
        int norms = model.named_modules().Count(m => m.module is LlamaRmsNorm);
        Assert.AreEqual(2 * model.Config.NumHiddenLayers + 1, norms);
        Assert.HasCount(norms, pows, "one Pow per RMSNorm");
        foreach (var pow in pows)
        {
            var cast = producers[pow.Input[0]];
            Assert.AreEqual("Cast", cast.OpType, $"{pow.Name} squares a Cast of the fp16 activation");
            Assert.AreEqual(Float, CastTo(cast), $"{pow.Name}: the Cast before it is to float");
            int exponentType = producers.TryGetValue(pow.Input[1], out var c) ? c.Attribute.Single(a => a.Name == "value").T.DataType : constants[pow.Input[1]].DataType;
            Assert.AreEqual(Float, exponentType, $"{pow.Name}: exponent in fp32");
            var div = consumers[cast.Output[0]].Single(n => n.OpType == "Div");
            var back = consumers[div.Output[0]].Single();
            Assert.AreEqual("Cast", back.OpType, $"{div.Name}: the normalised value is cast back");
            Assert.AreEqual(Float16, CastTo(back), $"{div.Name}: back to fp16");
        }
    }

    /// <summary>Documented fp16 tolerance: max |ORT fp16 − eager with fp16-rounded weights| relative to max |eager|.</summary>
    internal const double Fp16RelativeTolerance = 5e-3;

    /// <summary>
    /// Exports <paramref name="model"/> with fp16 weights and compute, runs it on a padded batch and compares with the
    /// reference: the eager fp32 forward of the same model whose weights (merged first for the merged mode, adapter
    /// factors included for the unmerged mode) were rounded to fp16 by libtorch. The gap left is fp16 activations only.
    /// </summary>
    private static void AssertFp16MatchesRoundedEager(LlamaForCausalLM model, OnnxExportMode mode, double activationScale, bool onCuda = false)
    {
        var proto = OnnxExporter.BuildModel(model, new ExportOptions { Mode = mode, WeightType = DType.F16 });
        Assert.IsTrue(proto.Graph.Initializer.Where(t => t.Name.EndsWith(".weight", StringComparison.Ordinal))
            .All(t => t.DataType == (int)Onnx.TensorProto.Types.DataType.Float16));
        using var ort = onCuda ? OrtRunner.FromBytesOnCuda(OnnxFile.ToBytes(proto)) : OrtRunner.FromBytes(OnnxFile.ToBytes(proto));
        long[] ids = TestModels.Ids(2, 6, 64, 9);
        long[] mask = TestModels.PaddedMask(6);
        float[] actual = ort.Run("logits", ("input_ids", ids, [2, 6]), ("attention_mask", mask, [2, 6])).Data;

        if (mode == OnnxExportMode.Merged)
        {
            ModelMerge.MergeInPlace(model); // plain weights W + s·B·A from here on (the branches are off)
        }
        else
        {
            TestModels.SetAdapters(model, mode == OnnxExportMode.Unmerged);
        }
        using (TorchSharp.torch.no_grad())
        {
            foreach (var (_, p) in model.named_parameters())
            {
                p.copy_(p.to(TorchSharp.torch.ScalarType.Float16).to(TorchSharp.torch.ScalarType.Float32));
            }
        }
        float[] expected = TestModels.Eager(model, ids, mask, 2, 6);

        Assert.IsTrue(actual.All(float.IsFinite), "fp16 logits must be finite, padded rows included");
        double scale = expected.Max(x => Math.Abs((double)x));
        double relative = Reference.MaxAbsDiff(actual, expected) / scale;
        Assert.IsLessThan(Fp16RelativeTolerance, relative, $"activations ×{activationScale}: max |ORT fp16 − eager| / max |eager| = {relative:G3} (max |eager| {scale:G3})");
    }

    /// <summary>Documented fp16 tolerance: absolute, on O(1) logits of the tiny model.</summary>
    internal const double Fp16Tolerance = 3e-2;

    /// <summary>
    /// Exports once and runs the file at (1, 5), (3, 7) and a padded (2, 6) batch, comparing every
    /// position with the eager forward (adapters on or off as the mode implies).
    /// </summary>
    internal static void AssertMatchesEager(LlamaForCausalLM model, ExportOptions options, bool adaptersInExpected)
    {
        using var ort = OrtRunner.FromBytes(OnnxFile.ToBytes(OnnxExporter.BuildModel(model, options)));
        TestModels.SetAdapters(model, adaptersInExpected);
        try
        {
            long vocab = model.Config.VocabSize;
            foreach (var (batch, seq, padded) in new[] { (1, 5, false), (3, 7, false), (2, 6, true) })
            {
                long[] ids = TestModels.Ids(batch, seq, vocab, batch * 100 + seq);
                long[] mask = padded ? TestModels.PaddedMask(seq) : TestModels.Ones(batch, seq);
                var (actual, shape) = ort.Run("logits", ("input_ids", ids, [batch, seq]), ("attention_mask", mask, [batch, seq]));
                CollectionAssert.AreEqual(new long[] { batch, seq, vocab }, shape);
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
