using System.Text.Json;
using Onnx;
using OnnxLora.Core;
using OnnxLora.Core.Onnx;
using OnnxLora.Merge.Onnx;
using static OnnxLora.Merge.Tests.Onnx.TorchLikeModel;

namespace OnnxLora.Merge.Tests.Onnx;

public sealed partial class OnnxModelMergerTests
{
    [TestMethod]
    public void Plan_ModuleMissingFromModel_ThrowsListingCandidates()
    {
        var model = Build(new TorchLikeSpec { Style = WeightStyle.AnonymousMatMul, Seed = 20 });
        string input = model.Save();
        const string kProj = "model.layers.0.self_attn.k_proj";
        var (adapter, _) = OnnxTestKit.Lora([kProj], r: 2, alpha: 2, seed: 600);
        using (adapter)
        {
            var e = BadInput.Throws(() => OnnxModelMerger.Plan(input, OnnxTestKit.One(adapter)));
            StringAssert.Contains(e.Message, input);
            StringAssert.Contains(e.Message, $"module '{kProj}'");
            StringAssert.Contains(e.Message, "maps to no initializer");
            StringAssert.Contains(e.Message, $"'{model.InitializerOf[Q + ".weight"]}'", "same-shape initializers are listed as candidates");
        }
    }

    [TestMethod]
    public void Plan_AnonymousModelWithoutCheckpoint_ThrowsAskingForContents()
    {
        var model = Build(new TorchLikeSpec { AllAnonymous = true, NodeNames = false, Seed = 21 });
        string input = model.Save();
        var (adapter, _) = OnnxTestKit.Lora([Up], r: 2, alpha: 2, seed: 610);
        using (adapter)
        {
            var e = BadInput.Throws(() => OnnxModelMerger.Plan(input, OnnxTestKit.One(adapter)));
            StringAssert.Contains(e.Message, $"module '{Up}'");
            StringAssert.Contains(e.Message, "no base checkpoint");
            StringAssert.Contains(e.Message, $"'{model.InitializerOf[Up + ".weight"]}' [8, 12]");
        }
    }

    [TestMethod]
    public void Plan_TwoInitializersWithTheSameContents_ThrowsAmbiguous()
    {
        static void SameQAndO(Dictionary<string, float[]> p) => p[O + ".weight"] = (float[])p[Q + ".weight"].Clone();
        var spec = new TorchLikeSpec { AllAnonymous = true, NodeNames = false, Seed = 22, Tweak = SameQAndO };
        var model = Build(spec);
        string input = model.Save();
        string checkpoint = model.SaveCheckpoint();
        var (adapter, _) = OnnxTestKit.Lora([Q], r: 2, alpha: 2, seed: 620);
        using (adapter)
        {
            var e = BadInput.Throws(() => OnnxModelMerger.Plan(input, OnnxTestKit.One(adapter), new OnnxMergeOptions { BaseCheckpoint = checkpoint }));
            StringAssert.Contains(e.Message, $"module '{Q}'");
            StringAssert.Contains(e.Message, "several initializers by contents");
            StringAssert.Contains(e.Message, $"'{model.InitializerOf[Q + ".weight"]}'");
            StringAssert.Contains(e.Message, $"'{model.InitializerOf[O + ".weight"]}'");
        }
    }

    [TestMethod]
    public void Plan_NameDifferingByPrefixFromTwoInitializers_ThrowsAmbiguous()
    {
        var model = Build(new TorchLikeSpec { Style = WeightStyle.NamedTranspose, Seed = 23 });
        // A second weight under another root name, read by the graph: "layers.0..." now fits both by one leading component.
        AddReadCopy(model, "decoder.layers.0.self_attn.q_proj.weight", new float[Dim * Dim]);
        string input = model.Save();
        var (adapter, _) = OnnxTestKit.Lora([Q], r: 2, alpha: 2, seed: 630);
        using (adapter)
        {
            using var renamed = Renamed(adapter, Q, "layers.0.self_attn.q_proj");
            var e = BadInput.Throws(() => OnnxModelMerger.Plan(input, OnnxTestKit.One(renamed)));
            StringAssert.Contains(e.Message, "module 'layers.0.self_attn.q_proj'");
            StringAssert.Contains(e.Message, "'model.layers.0.self_attn.q_proj.weight'");
            StringAssert.Contains(e.Message, "'decoder.layers.0.self_attn.q_proj.weight'");
        }
    }

    [TestMethod]
    public void Plan_ModulePathWithoutModelPrefix_MatchesByNameAndNodePath()
    {
        foreach (var style in new[] { WeightStyle.NamedTranspose, WeightStyle.AnonymousMatMul })
        {
            var model = Build(new TorchLikeSpec { Style = style, Seed = 24 });
            string input = model.Save();
            var (adapter, _) = OnnxTestKit.Lora([Q], r: 2, alpha: 2, seed: 640);
            using (adapter)
            {
                using var renamed = Renamed(adapter, Q, "layers.0.self_attn.q_proj");
                var plan = OnnxModelMerger.Plan(input, OnnxTestKit.One(renamed));
                Assert.AreEqual(model.InitializerOf[Q + ".weight"], plan.Entries.Single().Initializer, style.ToString());
            }
        }
    }

    [TestMethod]
    public void Merge_NonFiniteResult_ThrowsAndLeavesNoOutput()
    {
        var model = Build(new TorchLikeSpec { Seed = 25 });
        string input = model.Save(externalData: true);
        var (adapter, _) = OnnxTestKit.Lora([Down], r: 2, alpha: 2, seed: 650, bScale: float.PositiveInfinity);
        using (adapter)
        {
            string output = NewOutput();
            var e = BadInput.Throws(() => OnnxModelMerger.Merge(input, OnnxTestKit.One(adapter), output));
            StringAssert.Contains(e.Message, Down);
            Assert.IsEmpty(Directory.GetFileSystemEntries(Path.GetDirectoryName(output)!), "no output, data file or temporary file is left");
        }
    }

    [TestMethod]
    public void Merge_Fp16Overflow_ThrowsNamingInitializerAndLeavesNoOutput()
    {
        var model = Build(new TorchLikeSpec { DType = DType.F16, Seed = 26 });
        string input = model.Save();
        var (adapter, _) = OnnxTestKit.Lora([Up], r: 2, alpha: 2, seed: 660, bScale: 3e5f);
        using (adapter)
        {
            string output = NewOutput();
            var e = BadInput.Throws(() => OnnxModelMerger.Merge(input, OnnxTestKit.One(adapter), output));
            StringAssert.Contains(e.Message, $"initializer '{model.InitializerOf[Up + ".weight"]}'");
            StringAssert.Contains(e.Message, "overflowing F16");
            CheckpointMergerTests.AssertNamesAnOverflowingValue(e.Message);
            Assert.IsEmpty(Directory.GetFileSystemEntries(Path.GetDirectoryName(output)!));
        }
    }

    [TestMethod]
    public void Merge_ExistingOutput_RefusedUnlessOverwrite()
    {
        var model = Build(new TorchLikeSpec { Seed = 27 });
        string input = model.Save();
        var (adapter, branches) = OnnxTestKit.Lora([Q], r: 2, alpha: 2, seed: 670);
        using (adapter)
        {
            string output = NewOutput();
            File.WriteAllText(output, "old");
            var e = BadInput.Throws(() => OnnxModelMerger.Merge(input, OnnxTestKit.One(adapter), output));
            StringAssert.Contains(e.Message, output);
            Assert.AreEqual("old", File.ReadAllText(output));

            OnnxModelMerger.Merge(input, OnnxTestKit.One(adapter), output, new OnnxMergeOptions { Overwrite = true });
            OnnxTestKit.AssertOutputsClose(model.Forward(OnnxTestKit.Ids, branches), OnnxTestKit.Run(output, OnnxTestKit.Ids), 1e-4, "overwritten output");
            BadInput.Throws(() => OnnxModelMerger.Merge(input, OnnxTestKit.One(adapter), input, new OnnxMergeOptions { Overwrite = true }));
        }
    }

    [TestMethod]
    public void Plan_OutputDTypeOtherThanTheModels_IsBadInput()
    {
        var model = Build(new TorchLikeSpec { Seed = 28 });
        string input = model.Save();
        var (adapter, _) = OnnxTestKit.Lora([Q], r: 2, alpha: 2, seed: 680);
        using (adapter)
        {
            var options = new OnnxMergeOptions { Merge = MergeOptions.Default with { OutputDType = DType.F16 } };
            var e = BadInput.Throws(() => OnnxModelMerger.Plan(input, OnnxTestKit.One(adapter), options));
            StringAssert.Contains(e.Message, model.InitializerOf[Q + ".weight"]);
            var same = new OnnxMergeOptions { Merge = MergeOptions.Default with { OutputDType = DType.F32 } };
            Assert.HasCount(1, OnnxModelMerger.Plan(input, OnnxTestKit.One(adapter), same).Entries);
        }
    }

    [TestMethod]
    public void Plan_DescribeAndJson_ListModuleInitializerMatchLayoutDTypeShape()
    {
        var model = Build(new TorchLikeSpec { Style = WeightStyle.AnonymousMatMul, Seed = 29 });
        string input = model.Save();
        var (adapter, _) = OnnxTestKit.Lora([Embed, Up], r: 2, alpha: 2, seed: 690);
        using (adapter)
        {
            var plan = OnnxModelMerger.Plan(input, OnnxTestKit.One(adapter));
            Assert.IsEmpty(Directory.GetFiles(Path.GetDirectoryName(input)!).Where(f => f != input), "planning writes nothing");
            string up = model.InitializerOf[Up + ".weight"];
            string text = plan.Describe();
            StringAssert.Contains(text, $"{Up} -> {up}");
            StringAssert.Contains(text, "node-path transposed F32  [8, 12]");
            StringAssert.Contains(text, "MatMul '/model/layers.0/mlp/up_proj/MatMul'");
            StringAssert.Contains(text, $"{Embed}");

            using var json = JsonDocument.Parse(plan.ToJson());
            var entries = json.RootElement.GetProperty("entries").EnumerateArray().ToList();
            Assert.HasCount(2, entries);
            var upEntry = entries.Single(e => e.GetProperty("module").GetString() == Up);
            Assert.AreEqual(up, upEntry.GetProperty("initializer").GetString());
            Assert.AreEqual("node-path", upEntry.GetProperty("match").GetString());
            Assert.AreEqual("transposed", upEntry.GetProperty("layout").GetString());
            Assert.AreEqual("F32", upEntry.GetProperty("dtype").GetString());
            CollectionAssert.AreEqual(new long[] { Dim, Hidden }, upEntry.GetProperty("shape").EnumerateArray().Select(x => x.GetInt64()).ToArray());
            var embedEntry = entries.Single(e => e.GetProperty("module").GetString() == Embed);
            Assert.AreEqual("name", embedEntry.GetProperty("match").GetString());
            Assert.AreEqual("as-is", embedEntry.GetProperty("layout").GetString());
        }
    }

    [TestMethod]
    public void Plan_UnreadNamedCopyBesideFoldedWeight_IsIgnored()
    {
        // Exporters may leave the parameter itself behind, unread, beside its folded Wᵀ copy.
        var model = Build(new TorchLikeSpec { Style = WeightStyle.AnonymousMatMul, Seed = 31 });
        model.Proto.Graph.Initializer.Add(OnnxTensors.Create(Q + ".weight", DType.F32, [Dim, Dim], model.Params[Q + ".weight"]));
        string input = model.Save();
        var (adapter, _) = OnnxTestKit.Lora([Q], r: 2, alpha: 2, seed: 700);
        using (adapter)
        {
            var entry = OnnxModelMerger.Plan(input, OnnxTestKit.One(adapter)).Entries.Single();
            Assert.AreEqual((model.InitializerOf[Q + ".weight"], OnnxMatchKind.NodePath), (entry.Initializer, entry.Match));

            var anonymous = Build(new TorchLikeSpec { AllAnonymous = true, NodeNames = false, Seed = 31 });
            anonymous.Proto.Graph.Initializer.Add(OnnxTensors.Create("onnx::Unused_99", DType.F32, [Dim, Dim], model.Params[Q + ".weight"]));
            var byContents = OnnxModelMerger.Plan(anonymous.Save(), OnnxTestKit.One(adapter), new OnnxMergeOptions { BaseCheckpoint = anonymous.SaveCheckpoint() }).Entries.Single();
            Assert.AreEqual((anonymous.InitializerOf[Q + ".weight"], OnnxMatchKind.Content, OnnxWeightLayout.Transposed), (byContents.Initializer, byContents.Match, byContents.Layout));
        }
    }

    /// <summary>Adds an initializer that an Identity node reads into an extra graph output.</summary>
    private static void AddReadCopy(TorchLikeModel model, string name, float[] values)
    {
        var graph = model.Proto.Graph;
        graph.Initializer.Add(OnnxTensors.Create(name, DType.F32, [Dim, Dim], values));
        var node = new NodeProto { OpType = "Identity", Name = "/copy/Identity" };
        node.Input.Add(name);
        node.Output.Add("copy_out");
        graph.Node.Add(node);
        var type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)TensorProto.Types.DataType.Float, Shape = new TensorShapeProto() } };
        type.TensorType.Shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimValue = Dim });
        type.TensorType.Shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimValue = Dim });
        graph.Output.Add(new ValueInfoProto { Name = "copy_out", Type = type });
    }

    /// <summary>A copy of a one-module adapter with its module under another path.</summary>
    private static Core.Peft.PeftAdapter Renamed(Core.Peft.PeftAdapter adapter, string from, string to)
    {
        var tensors = adapter.Weights.Tensors
            .Select(t => (t.Name.Replace(from, to, StringComparison.Ordinal), t.Shape.ToArray(), adapter.Weights.ReadSingles(t)))
            .ToArray();
        var config = adapter.Config with { TargetModules = Core.Peft.TargetModules.FromList([to[(to.LastIndexOf('.') + 1)..]]) };
        return TestData.Adapter(config, tensors);
    }
}
