using OnnxLora.Core;
using OnnxLora.Core.Onnx;
using OnnxLora.Merge.Onnx;
using static OnnxLora.Merge.Tests.Onnx.TorchLikeModel;

namespace OnnxLora.Merge.Tests.Onnx;

[TestClass]
public sealed partial class OnnxModelMergerTests
{
    private static readonly string[] AllModules = [Embed, Q, O, Up, Down];

    private static string NewOutput() => Path.Combine(TestData.NewDir(), "merged.onnx");

    /// <summary>
    /// Merges an adapter on every module into <paramref name="model"/> and checks: the plan's mapping,
    /// each merged initializer against W + s·B·A in fp64 in the initializer's layout, untouched
    /// initializers byte-equal, the graph unchanged, and ORT's outputs against the fp64 forward with
    /// explicit LoRA branches.
    /// </summary>
    private static OnnxMergeResult MergeAndCheck(TorchLikeModel model, string[] modules, OnnxMatchKind linearMatch, OnnxWeightLayout linearLayout,
        bool external = false, OnnxMergeOptions? options = null, bool fanInFanOut = false)
    {
        string input = model.Save(external);
        var (adapter, branches) = OnnxTestKit.Lora(modules, r: 4, alpha: 8, seed: 100, fanInFanOut: fanInFanOut);
        using (adapter)
        {
            string output = NewOutput();
            var result = OnnxModelMerger.Merge(input, OnnxTestKit.One(adapter), output, options);

            Assert.HasCount(modules.Length, result.Plan.Entries);
            foreach (var e in result.Plan.Entries)
            {
                Assert.AreEqual(model.InitializerOf[e.ModulePath + ".weight"], e.Initializer, e.ModulePath);
                Assert.AreEqual(e.ModulePath == Embed ? OnnxWeightLayout.AsIs : linearLayout, e.Layout, e.ModulePath);
                if (e.ModulePath != Embed || linearMatch == OnnxMatchKind.Content)
                {
                    Assert.AreEqual(linearMatch, e.Match, e.ModulePath);
                }
                Assert.AreEqual(model.Spec.DType, e.DType, e.ModulePath);
            }
            Assert.AreEqual(modules.Length, result.InitializersMerged);

            var dtype = model.Spec.DType;
            foreach (string m in modules)
            {
                var expected = model.InInitializerLayout(m, model.MergedParam(m, branches));
                var actual = OnnxTestKit.Initializer(output, model.InitializerOf[m + ".weight"]);
                // fp32: within 1e-6 of the tensor's scale; fp16/bf16: the sum rounded once (half an ulp, 2^-11 / 2^-8, with margin).
                double tolerance = dtype switch { DType.F16 => Math.ScaleB(1, -10), DType.BF16 => Math.ScaleB(1, -7), _ => 1e-6 };
                TestData.AssertClose(expected, actual, tolerance, $"{m} merged", scale: dtype == DType.F32 ? TestData.MaxAbs(expected) : 1e-3);
            }
            var bias = OnnxTestKit.Initializer(output, model.InitializerOf[Up + ".bias"]);
            CollectionAssert.AreEqual(model.Params[Up + ".bias"], bias, "an initializer no adapter targets is unchanged");

            var inputModel = OnnxFile.Load(input);
            var outputModel = OnnxFile.Load(output);
            Assert.AreEqual(OnnxTestKit.Structure(inputModel), OnnxTestKit.Structure(outputModel), "nodes, inputs, outputs and initializer names/dims are unchanged");

            // The model computes in fp32 from rounded weights: fp16/bf16 outputs carry the weights' rounding.
            double tol = dtype switch { DType.F16 => 1e-2, DType.BF16 => 5e-2, _ => 1e-4 };
            OnnxTestKit.AssertOutputsClose(model.Forward(OnnxTestKit.Ids, []), OnnxTestKit.Run(input, OnnxTestKit.Ids), tol, "unmerged model vs fp64 reference");
            OnnxTestKit.AssertOutputsClose(model.Forward(OnnxTestKit.Ids, branches), OnnxTestKit.Run(output, OnnxTestKit.Ids), tol, "merged model vs fp64 with LoRA branches");
            return result;
        }
    }

    [TestMethod]
    public void Merge_AnonymousTransposedMatMul_MatchesByNodePathAndAddsDeltaTransposed()
    {
        var model = Build(new TorchLikeSpec { Style = WeightStyle.AnonymousMatMul });
        StringAssert.StartsWith(model.InitializerOf[Q + ".weight"], "onnx::MatMul_");
        var result = MergeAndCheck(model, AllModules, OnnxMatchKind.NodePath, OnnxWeightLayout.Transposed);
        var embed = result.Plan.Entries.Single(e => e.ModulePath == Embed);
        Assert.AreEqual(OnnxMatchKind.Name, embed.Match);
        Assert.IsNull(result.ExternalDataPath);
    }

    [TestMethod]
    public void Merge_NamedWeightBehindTranspose_MatchesByNameAsIs()
    {
        var model = Build(new TorchLikeSpec { Style = WeightStyle.NamedTranspose, Seed = 2 });
        var result = MergeAndCheck(model, AllModules, OnnxMatchKind.Name, OnnxWeightLayout.AsIs);
        StringAssert.Contains(result.Plan.Entries.Single(e => e.ModulePath == Q).Via, "Transpose → MatMul");
    }

    [TestMethod]
    public void Merge_GemmTransB1_MatchesByNodePathAsIs()
    {
        var model = Build(new TorchLikeSpec { Style = WeightStyle.GemmTransB1, Seed = 3 });
        var result = MergeAndCheck(model, AllModules, OnnxMatchKind.NodePath, OnnxWeightLayout.AsIs);
        StringAssert.Contains(result.Plan.Entries.Single(e => e.ModulePath == Up).Via, "transB=1");
    }

    [TestMethod]
    public void Merge_GemmTransB0_MatchesByNodePathTransposed()
    {
        var model = Build(new TorchLikeSpec { Style = WeightStyle.GemmTransB0, Seed = 4 });
        MergeAndCheck(model, AllModules, OnnxMatchKind.NodePath, OnnxWeightLayout.Transposed);
    }

    [TestMethod]
    public void Merge_Conv1DWeightsWithFanInFanOut_MatchesByNameAsIs()
    {
        var model = Build(new TorchLikeSpec { Style = WeightStyle.Conv1D, Seed = 5 });
        MergeAndCheck(model, [Q, O, Up, Down], OnnxMatchKind.Name, OnnxWeightLayout.AsIs, fanInFanOut: true);
    }

    [TestMethod]
    public void Merge_Fp16Initializers_AddsInFp32AndRoundsOnce()
    {
        var model = Build(new TorchLikeSpec { Style = WeightStyle.AnonymousMatMul, DType = DType.F16, Seed = 6 });
        MergeAndCheck(model, AllModules, OnnxMatchKind.NodePath, OnnxWeightLayout.Transposed);
    }

    [TestMethod]
    public void Merge_Bf16Initializers_AddsInFp32AndRoundsOnce()
    {
        var model = Build(new TorchLikeSpec { Style = WeightStyle.NamedTranspose, DType = DType.BF16, Seed = 13 });
        MergeAndCheck(model, AllModules, OnnxMatchKind.Name, OnnxWeightLayout.AsIs);
    }

    [TestMethod]
    public void Merge_ExternalDataInput_WritesExternalDataOutput()
    {
        var model = Build(new TorchLikeSpec { Style = WeightStyle.AnonymousMatMul, Seed = 7 });
        var result = MergeAndCheck(model, AllModules, OnnxMatchKind.NodePath, OnnxWeightLayout.Transposed, external: true);
        Assert.IsNotNull(result.ExternalDataPath);
        Assert.IsTrue(File.Exists(result.ExternalDataPath));
        var written = OnnxFile.Load(result.OutputPath, new OnnxLoadOptions { LoadExternalData = false });
        foreach (string m in AllModules)
        {
            Assert.IsTrue(OnnxTensors.IsExternal(written.Graph.Initializer.Single(t => t.Name == model.InitializerOf[m + ".weight"])), $"{m} stays in external data");
        }
    }

    [TestMethod]
    public void Merge_AnonymousInitializersWithoutNodeNames_MatchesByCheckpointContents()
    {
        var spec = new TorchLikeSpec { Style = WeightStyle.AnonymousMatMul, AllAnonymous = true, NodeNames = false, Seed = 8 };
        var model = Build(spec);
        string checkpoint = model.SaveCheckpoint();
        MergeAndCheck(model, AllModules, OnnxMatchKind.Content, OnnxWeightLayout.Transposed, options: new OnnxMergeOptions { BaseCheckpoint = checkpoint });
    }

    [TestMethod]
    public void Merge_Fp16ModelAndFp32Checkpoint_MatchesContentsWithinFp16Rounding()
    {
        var spec = new TorchLikeSpec { Style = WeightStyle.NamedTranspose, AllAnonymous = true, NodeNames = false, Seed = 9 };
        string checkpoint = Build(spec).SaveCheckpoint(DType.F32);
        var model = Build(spec with { DType = DType.F16 });
        Assert.AreNotEqual(model.Params[Q + ".weight"][0], Build(spec).Params[Q + ".weight"][0], "the checkpoint holds values fp16 rounds");
        MergeAndCheck(model, AllModules, OnnxMatchKind.Content, OnnxWeightLayout.AsIs, options: new OnnxMergeOptions { BaseCheckpoint = checkpoint });
    }

    [TestMethod]
    public void Merge_TwoWeightedAdapters_AddsWeightedDeltas()
    {
        var model = Build(new TorchLikeSpec { Style = WeightStyle.AnonymousMatMul, Seed = 10 });
        string input = model.Save();
        var (a1, b1) = OnnxTestKit.Lora([Q, Up], r: 2, alpha: 4, seed: 200);
        var (a2, b2) = OnnxTestKit.Lora([Q, Down], r: 3, alpha: 3, seed: 300, rslora: true);
        using (a1)
        using (a2)
        {
            string output = NewOutput();
            OnnxModelMerger.Merge(input, [new WeightedAdapter(a1, 0.7), new WeightedAdapter(a2, -0.4)], output);
            var branches = b1.Select(b => b with { Scale = b.Scale * 0.7 }).Concat(b2.Select(b => b with { Scale = b.Scale * -0.4 })).ToList();
            foreach (string m in new[] { Q, Up, Down })
            {
                var expected = model.InInitializerLayout(m, model.MergedParam(m, branches));
                TestData.AssertClose(expected, OnnxTestKit.Initializer(output, model.InitializerOf[m + ".weight"]), 1e-6, m, TestData.MaxAbs(expected));
            }
            OnnxTestKit.AssertOutputsClose(model.Forward(OnnxTestKit.Ids, branches), OnnxTestKit.Run(output, OnnxTestKit.Ids), 1e-4, "merged vs fp64 branches");
        }
    }

    [TestMethod]
    public void Merge_DoraOnTransposedInitializer_NormalizesRowsOfTheParameter()
    {
        var model = Build(new TorchLikeSpec { Style = WeightStyle.AnonymousMatMul, Seed = 11 });
        string input = model.Save();
        var magnitude = TestData.Random(Hidden, 400, 1.0).Select(v => 0.5f + Math.Abs(v)).ToArray();
        var (adapter, branches) = OnnxTestKit.Lora([Up], r: 2, alpha: 4, seed: 410, magnitude: m => m == Up ? magnitude : null);
        using (adapter)
        {
            string output = NewOutput();
            OnnxModelMerger.Merge(input, OnnxTestKit.One(adapter), output);
            // DoRA: W' = m ⊙ V / ‖V‖ with V = W + s·B·A and the norm over each output row (parameter [out, in]).
            var v = model.MergedParam(Up, branches);
            var dora = new double[v.Length];
            for (int r = 0; r < Hidden; r++)
            {
                double norm = Math.Sqrt(Enumerable.Range(0, Dim).Sum(c => v[(r * Dim) + c] * v[(r * Dim) + c]));
                for (int c = 0; c < Dim; c++)
                {
                    dora[(r * Dim) + c] = magnitude[r] * v[(r * Dim) + c] / norm;
                }
            }
            var expected = model.InInitializerLayout(Up, dora);
            TestData.AssertClose(expected, OnnxTestKit.Initializer(output, model.InitializerOf[Up + ".weight"]), 1e-5, "DoRA up_proj", TestData.MaxAbs(expected));
            var weights = new Dictionary<string, double[]> { [Up + ".weight"] = dora };
            OnnxTestKit.AssertOutputsClose(model.Forward(OnnxTestKit.Ids, [], weights), OnnxTestKit.Run(output, OnnxTestKit.Ids), 1e-4, "DoRA merged vs fp64");
        }
    }

    [TestMethod]
    public void Merge_MatchesCheckpointMergeOfTheSameWeights()
    {
        // The same adapter merged by CheckpointMerger into the safetensors weights, then laid out as the ONNX
        // model again, must give the outputs of merging into the ONNX model directly.
        var spec = new TorchLikeSpec { Style = WeightStyle.AnonymousMatMul, Seed = 12 };
        var model = Build(spec);
        string input = model.Save();
        string checkpoint = model.SaveCheckpoint();
        var (adapter, _) = OnnxTestKit.Lora(AllModules, r: 4, alpha: 16, seed: 500, rslora: true);
        using (adapter)
        {
            string mergedCheckpoint = Path.Combine(TestData.NewDir(), "merged-ckpt");
            CheckpointMerger.Merge(checkpoint, OnnxTestKit.One(adapter), mergedCheckpoint);
            using var merged = Core.Safetensors.SafetensorsCheckpoint.Open(mergedCheckpoint);
            void UseMerged(Dictionary<string, float[]> p)
            {
                foreach (string k in p.Keys.ToList())
                {
                    p[k] = merged.ReadSingles(k);
                }
            }
            var rebuilt = Build(spec with { Tweak = UseMerged });
            string rebuiltPath = rebuilt.Save();

            string output = NewOutput();
            OnnxModelMerger.Merge(input, OnnxTestKit.One(adapter), output);
            var direct = OnnxTestKit.Run(output, OnnxTestKit.Ids);
            var viaCheckpoint = OnnxTestKit.Run(rebuiltPath, OnnxTestKit.Ids);
            OnnxTestKit.AssertOutputsClose(viaCheckpoint.Select(x => (double)x).ToArray(), direct, 1e-4, "ONNX merge vs checkpoint merge");
        }
    }
}
