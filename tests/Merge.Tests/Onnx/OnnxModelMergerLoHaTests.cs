using OnnxLora.Core.Peft;
using OnnxLora.Merge.Onnx;
using static OnnxLora.Merge.Tests.Onnx.TorchLikeModel;

namespace OnnxLora.Merge.Tests.Onnx;

public sealed partial class OnnxModelMergerTests
{
    [TestMethod]
    public void Merge_LoHaOnTransposedInitializers_AddsHadamardDeltaTransposed()
    {
        var model = Build(new TorchLikeSpec { Style = WeightStyle.AnonymousMatMul, Seed = 40 });
        string input = model.Save();
        const int r = 3;
        const double alpha = 6;
        var tensors = new List<(string, long[], float[])>();
        var expectedParams = new Dictionary<string, double[]>();
        int seed = 800;
        foreach (string m in new[] { Q, Up })
        {
            var (o, i) = DimsOf(m);
            var w1a = TestData.Random(o * r, seed++, 0.5);
            var w1b = TestData.Random(r * i, seed++, 0.5);
            var w2a = TestData.Random(o * r, seed++, 0.5);
            var w2b = TestData.Random(r * i, seed++, 0.5);
            tensors.Add((PeftAdapter.KeyFor(m, AdapterModuleKind.LoHa, AdapterTensorRole.HadaW1A), [o, r], w1a));
            tensors.Add((PeftAdapter.KeyFor(m, AdapterModuleKind.LoHa, AdapterTensorRole.HadaW1B), [r, i], w1b));
            tensors.Add((PeftAdapter.KeyFor(m, AdapterModuleKind.LoHa, AdapterTensorRole.HadaW2A), [o, r], w2a));
            tensors.Add((PeftAdapter.KeyFor(m, AdapterModuleKind.LoHa, AdapterTensorRole.HadaW2B), [r, i], w2b));
            // ΔW = (w1a·w1b) ⊙ (w2a·w2b) · alpha / r, [out, in].
            var p1 = TestData.Product(w1a, w1b, o, r, i);
            var p2 = TestData.Product(w2a, w2b, o, r, i);
            expectedParams[m + ".weight"] = model.Params[m + ".weight"].Select((w, k) => w + (p1[k] * p2[k] * alpha / r)).ToArray();
        }
        var config = new PeftAdapterConfig { PeftType = PeftType.LoHa, R = r, Alpha = alpha, TargetModules = TargetModules.FromList(["q_proj", "up_proj"]) };
        using var adapter = TestData.Adapter(config, tensors.ToArray());

        string output = NewOutput();
        var result = OnnxModelMerger.Merge(input, OnnxTestKit.One(adapter), output);
        Assert.IsTrue(result.Plan.Entries.All(e => e.Update.StartsWith("loha", StringComparison.Ordinal)), result.Plan.Describe());
        foreach (string m in new[] { Q, Up })
        {
            var expected = model.InInitializerLayout(m, expectedParams[m + ".weight"]);
            TestData.AssertClose(expected, OnnxTestKit.Initializer(output, model.InitializerOf[m + ".weight"]), 1e-6, $"LoHa {m}", TestData.MaxAbs(expected));
        }
        OnnxTestKit.AssertOutputsClose(model.Forward(OnnxTestKit.Ids, [], expectedParams), OnnxTestKit.Run(output, OnnxTestKit.Ids), 1e-4, "LoHa merged vs fp64");
    }
}
