using OnnxLora.Merge.Onnx;
using OnnxLora.Merge.Onnx.Internals;
using static OnnxLora.Merge.Tests.Onnx.TorchLikeModel;

namespace OnnxLora.Merge.Tests.Onnx;

/// <summary>Matching anonymous weights by contents with a base checkpoint, when nothing matches.</summary>
public sealed partial class OnnxModelMergerTests
{
    [TestMethod]
    public void Plan_CheckpointWhoseWeightsMatchNoInitializer_SaysWhichBaseWeightAndWhatToCheck()
    {
        var spec = new TorchLikeSpec { AllAnonymous = true, NodeNames = false, Seed = 27 };
        var model = Build(spec);
        string input = model.Save();
        // Same names and shapes, other weights: a checkpoint the model was not exported from.
        string checkpoint = Build(spec with { Seed = 28 }).SaveCheckpoint();
        var (adapter, _) = OnnxTestKit.Lora([Up], r: 2, alpha: 2, seed: 670);
        using (adapter)
        {
            var e = BadInput.Throws(() => OnnxModelMerger.Plan(input, OnnxTestKit.One(adapter), new OnnxMergeOptions { BaseCheckpoint = checkpoint }));

            // Up [12, 8] is stored transposed [8, 12]; Down [8, 12] is stored transposed [12, 8]: both have Up's shape one way or the other.
            string[] sameShape = [$"'{model.InitializerOf[Up + ".weight"]}' [8, 12]", $"'{model.InitializerOf[Down + ".weight"]}' [12, 8]"];
            Array.Sort(sameShape, StringComparer.Ordinal);
            Assert.AreEqual(
                $"{input}: adapter {adapter.Directory}: module '{Up}' maps to no initializer: no initializer named '{Up}.weight' (nor differing by one leading component), " +
                $"no MatMul/Gemm/Gather node named after the path (torch.onnx style '/model/layers.0/mlp/up_proj/MatMul'), " +
                $"and no initializer has the contents of its base weight '{Up}.weight' [12, 8] in the base checkpoint {checkpoint} (compared as stored and transposed). " +
                $"Candidates: {string.Join(", ", sameShape)}. " +
                $"Check that {checkpoint} is the checkpoint {input} was exported from (the same weights: not fine-tuned, merged or quantized since) and that the adapter was trained on it.",
                e.Message);
        }
    }

    [TestMethod]
    public void Plan_CheckpointWithoutTheModulesWeight_AsksWhetherAdapterAndCheckpointFit()
    {
        var model = Build(new TorchLikeSpec { AllAnonymous = true, NodeNames = false, Seed = 29 });
        string input = model.Save();
        string checkpoint = TestData.Checkpoint([[("model.layers.0.mlp.gate_proj.weight", Core.DType.F32, [Hidden, Dim], new float[Hidden * Dim])]]);
        var (adapter, _) = OnnxTestKit.Lora([Up], r: 2, alpha: 2, seed: 680);
        using (adapter)
        {
            var e = BadInput.Throws(() => OnnxModelMerger.Plan(input, OnnxTestKit.One(adapter), new OnnxMergeOptions { BaseCheckpoint = checkpoint }));

            StringAssert.Contains(e.Message, $"and the base checkpoint {checkpoint} has no tensor '{Up}.weight' to match contents with. Candidates: ");
            StringAssert.EndsWith(e.Message, $"Is the adapter for this model, and {checkpoint} the checkpoint {input} was exported from?");
        }
    }

    [TestMethod]
    public void Plan_NoCheckpoint_AdvisesPassingOne()
    {
        var model = Build(new TorchLikeSpec { AllAnonymous = true, NodeNames = false, Seed = 30 });
        string input = model.Save();
        var (adapter, _) = OnnxTestKit.Lora([Up], r: 2, alpha: 2, seed: 690);
        using (adapter)
        {
            var e = BadInput.Throws(() => OnnxModelMerger.Plan(input, OnnxTestKit.One(adapter)));

            StringAssert.Contains(e.Message, "and no base checkpoint was given to match by contents. Candidates: ");
            StringAssert.EndsWith(e.Message, "Is the adapter for this model? If the model's weights are anonymous (onnx::MatMul_N), pass the base checkpoint it was exported from to match them by contents.");
        }
    }

    /// <summary>The node names in messages are spelled as the torch.onnx imitation spells them, for every linear of the test model.</summary>
    [TestMethod]
    public void NodeNameOf_SpellsTorchOnnxNodeNames()
    {
        var model = Build(new TorchLikeSpec { Style = WeightStyle.AnonymousMatMul, Seed = 31 });
        var matMuls = model.Proto.Graph.Node.Where(n => n.OpType == "MatMul").ToList();

        Assert.HasCount(Linears.Length, matMuls);
        foreach (var node in matMuls)
        {
            string path = OnnxGraphIndex.ModulePathOf(node)!;
            Assert.AreEqual(node.Name, OnnxGraphIndex.NodeNameOf(path, "MatMul"), path);
        }
        Assert.AreEqual("/bert/encoder/layer.11/attention/self/query/MatMul", OnnxGraphIndex.NodeNameOf("bert.encoder.layer.11.attention.self.query", "MatMul"));
        Assert.AreEqual("/model/layers.0/mlp/experts.3/w1/MatMul", OnnxGraphIndex.NodeNameOf("model.layers.0.mlp.experts.3.w1", "MatMul"));
        Assert.AreEqual("/lm_head/MatMul", OnnxGraphIndex.NodeNameOf("lm_head", "MatMul"));
    }
}
