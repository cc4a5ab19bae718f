using OnnxLora.Core.Peft;
using OnnxLora.Merge.Onnx;
using static OnnxLora.Merge.Tests.Onnx.TorchLikeModel;

namespace OnnxLora.Merge.Tests.Onnx;

public sealed partial class OnnxModelMergerTests
{
    [TestMethod]
    public void Merge_SavedTensors_ReplaceInitializersInTheirLayout()
    {
        // Every initializer anonymous: the modules_to_save weight is found by its MatMul's path (held as Wᵀ),
        // the trained bias by its Add's path.
        var model = Build(new TorchLikeSpec { Style = WeightStyle.AnonymousMatMul, AllAnonymous = true, Seed = 30 });
        string input = model.Save();
        var a = TestData.Random(2 * Dim, 700, 0.5);
        var b = TestData.Random(Hidden * 2, 701, 0.5);
        var savedDown = TestData.Random(Dim * Hidden, 702, 0.5);
        var savedBias = TestData.Random(Hidden, 703, 0.5);
        var config = new PeftAdapterConfig
        {
            R = 2,
            Alpha = 4,
            Bias = PeftBias.LoraOnly,
            ModulesToSave = ["down_proj"],
            TargetModules = TargetModules.FromList(["up_proj"]),
        };
        using var adapter = TestData.Adapter(config,
            (PeftAdapter.KeyFor(Up, AdapterModuleKind.Lora, AdapterTensorRole.LoraA), [2, Dim], a),
            (PeftAdapter.KeyFor(Up, AdapterModuleKind.Lora, AdapterTensorRole.LoraB), [Hidden, 2], b),
            (PeftAdapter.KeyPrefix + Up + ".bias", [Hidden], savedBias),
            (PeftAdapter.KeyPrefix + Down + ".weight", [Dim, Hidden], savedDown));
        Assert.HasCount(2, adapter.ExtraTensors);

        string output = NewOutput();
        var result = OnnxModelMerger.Merge(input, OnnxTestKit.One(adapter), output);
        Assert.AreEqual(1, result.InitializersMerged);
        Assert.AreEqual(2, result.InitializersReplaced);
        var down = result.Plan.Entries.Single(e => e.ModulePath == Down + ".weight");
        Assert.AreEqual((OnnxMatchKind.NodePath, OnnxWeightLayout.Transposed, model.InitializerOf[Down + ".weight"]), (down.Match, down.Layout, down.Initializer));
        var bias = result.Plan.Entries.Single(e => e.ModulePath == Up + ".bias");
        Assert.AreEqual((OnnxMatchKind.NodePath, model.InitializerOf[Up + ".bias"]), (bias.Match, bias.Initializer));

        var downParam = savedDown.Select(v => (double)v).ToArray();
        CollectionAssert.AreEqual(TestData.Transposed(downParam, Dim, Hidden).Select(v => (float)v).ToArray(),
            OnnxTestKit.Initializer(output, model.InitializerOf[Down + ".weight"]), "saved down_proj weight, stored as Wᵀ");
        CollectionAssert.AreEqual(savedBias, OnnxTestKit.Initializer(output, model.InitializerOf[Up + ".bias"]), "saved bias");

        var weights = new Dictionary<string, double[]>
        {
            [Down + ".weight"] = downParam,
            [Up + ".bias"] = savedBias.Select(v => (double)v).ToArray(),
        };
        var branches = new List<LoraBranch> { new(Up, a, b, 2, 2.0) };
        OnnxTestKit.AssertOutputsClose(model.Forward(OnnxTestKit.Ids, branches, weights), OnnxTestKit.Run(output, OnnxTestKit.Ids), 1e-4, "merged with saved tensors vs fp64");
    }
}
