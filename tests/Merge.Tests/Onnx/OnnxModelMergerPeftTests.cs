using OnnxLora.Core.Peft;
using OnnxLora.Merge.Onnx;
using static OnnxLora.Merge.Tests.Onnx.TorchLikeModel;

namespace OnnxLora.Merge.Tests.Onnx;

public sealed partial class OnnxModelMergerTests
{
    [TestMethod]
    public void Merge_Conv1DWeightsWithFanInFanOutFalseInTheConfig_TheGraphReaderFixesTheOrientation()
    {
        // PEFT forces fan_in_fan_out true on a Conv1D; in an ONNX graph the MatMul reading the weight tells its orientation.
        var model = Build(new TorchLikeSpec { Style = WeightStyle.Conv1D, Seed = 5 });
        MergeAndCheck(model, [Q, O, Up, Down], OnnxMatchKind.Name, OnnxWeightLayout.Transposed, fanInFanOut: false);
    }

    [TestMethod]
    public void Merge_LoraBias_IsAddedToTheBiasInitializer()
    {
        var model = Build(new TorchLikeSpec { Style = WeightStyle.AnonymousMatMul, Seed = 12 });
        string input = model.Save();
        var (o, i) = DimsOf(Up);
        const int r = 2;
        var a = TestData.Random(r * i, 1, 0.5);
        var b = TestData.Random(o * r, 2, 0.5);
        var bias = TestData.Random(o, 3, 0.5);
        using var adapter = TestData.Adapter(new PeftAdapterConfig { R = r, Alpha = 6, LoraBias = true, TargetModules = TargetModules.FromList(["up_proj"]) },
            (PeftAdapter.KeyFor(Up, AdapterModuleKind.Lora, AdapterTensorRole.LoraA), [r, i], a),
            (PeftAdapter.KeyFor(Up, AdapterModuleKind.Lora, AdapterTensorRole.LoraB), [o, r], b),
            (PeftAdapter.KeyFor(Up, AdapterModuleKind.Lora, AdapterTensorRole.LoraBias), [o], bias));
        string output = NewOutput();
        var result = OnnxModelMerger.Merge(input, OnnxTestKit.One(adapter, 0.5), output);
        Assert.AreEqual(2, result.InitializersMerged, "up_proj's weight and bias");
        var merged = OnnxTestKit.Initializer(output, model.InitializerOf[Up + ".bias"]);
        var expected = model.Params[Up + ".bias"].Select((v, k) => v + (0.5 * 3 * bias[k])).ToArray();
        TestData.AssertClose(expected, merged, 1e-6, "bias += w·s·b");
    }
}
