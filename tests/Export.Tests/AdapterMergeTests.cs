using OnnxLora.Core.Peft;
using OnnxLora.Models;
using OnnxLora.Models.Llama;
using static OnnxLora.Merge.Tests.TestData;
using static TorchSharp.torch;

namespace OnnxLora.Export.Tests;

[TestClass]
public sealed class AdapterMergeTests
{
    private const string Q = "model.layers.0.self_attn.q_proj";

    private static float[] Values(Tensor t) => t.detach().to(ScalarType.Float32).contiguous().data<float>().ToArray();

    private static void Randomize(Tensor t, int seed)
    {
        using var noGrad = no_grad();
        var v = Random((int)t.numel(), seed, 0.5);
        using var src = tensor(v, t.shape);
        t.copy_(src);
    }

    [TestMethod]
    public void MergeAdapters_IntoPlainModel_ByParameterName()
    {
        using var scope = NewDisposeScope();
        var model = LlamaForCausalLM.CreateRandom(TinyConfigs.Llama(), 5);
        var param = model.named_parameters().Single(p => p.name == Q + ".weight").parameter;
        var w0 = Values(param);
        var (adapter, a, b) = Lora(Q, 3, 32, 32, alpha: 6, seed: 9);
        using var _ = adapter;
        var plan = AdapterMerge.MergeAdapters(model, [new(adapter, 0.5)]);
        Assert.AreEqual(Q + ".weight", plan.Entries.Single().TargetTensor);
        AssertClose(Add(w0, Scaled(Product(b, a, 32, 3, 32), 0.5 * 2.0)), Values(param), 1e-6, "merged parameter", 1e-3);
    }

    [TestMethod]
    public void MergeAdapters_UnknownModule_LeavesModelUnchanged()
    {
        using var scope = NewDisposeScope();
        var model = LlamaForCausalLM.CreateRandom(TinyConfigs.Llama(), 6);
        var before = model.named_parameters().Select(p => Values(p.parameter)).ToList();
        using var adapter = Adapter(new PeftAdapterConfig { R = 1, Alpha = 1 },
            (Key("model.layers.7.self_attn.q_proj", ".lora_A.weight"), [1, 32], Random(32, 1)),
            (Key("model.layers.7.self_attn.q_proj", ".lora_B.weight"), [32, 1], Random(32, 2)));
        BadInput.Throws(() => AdapterMerge.MergeAdapters(model, [new(adapter)]));
        var after = model.named_parameters().Select(p => Values(p.parameter)).ToList();
        for (int i = 0; i < before.Count; i++)
        {
            CollectionAssert.AreEqual(before[i], after[i]);
        }
    }
}
