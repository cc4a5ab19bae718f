using OnnxLora.Core.Peft;
using OnnxLora.Models.Llama;
using OnnxLora.Models.Lora;
using static OnnxLora.Merge.Tests.TestData;
using static TorchSharp.torch;

namespace OnnxLora.Models.Tests.Lora;

[TestClass]
public sealed class ModelMergeTests
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
    public void MergeInPlace_LoraAndEmbedding_MatchesReferenceAndKeepsOutputs_UnmergeRestores()
    {
        using var scope = NewDisposeScope();
        var model = LlamaForCausalLM.CreateRandom(TinyConfigs.Llama(), 3);
        LoraInjection.Apply(model, new PeftAdapterConfig { TargetModules = TargetModules.FromList("q_proj", "v_proj", "embed_tokens"), R = 4, Alpha = 8, UseRsLora = true });
        var layers = LoraInjection.LoraLayers(model).ToDictionary(l => l.Path, l => l.Layer);
        var q = (LoraLinear)layers[Q];
        var emb = (LoraEmbedding)layers["model.embed_tokens"];
        int seed = 100;
        foreach (var l in layers.Values)
        {
            if (l is LoraLinear ll)
            {
                Randomize(ll.LoraB, seed++);
            }
            else if (l is LoraEmbedding le)
            {
                Randomize(le.LoraEmbeddingA, seed++);
            }
        }
        model.eval();
        var ids = tensor(new long[] { 1, 5, 9, 33, 2, 17 }, [1, 6]);
        var before = Values(model.call(ids, null));
        var w0 = Values(q.Weight);
        var e0 = Values(emb.Weight);

        var merged = ModelMerge.MergeInPlace(model);
        // Unmerging is exact up to fp32 rounding of the merged values, so errors are measured against their size.
        double qScale = MaxAbs(Values(q.Weight).Select(v => (double)v));
        double eScale = MaxAbs(Values(emb.Weight).Select(v => (double)v));
        Assert.HasCount(5, merged);
        Assert.IsFalse(q.AdapterEnabled);

        double s = 8 / Math.Sqrt(4);
        AssertClose(Add(w0, Scaled(Product(Values(q.LoraB), Values(q.LoraA), 32, 4, 32), s)), Values(q.Weight), 1e-6, "q W'", 1e-3);
        var embDelta = Transposed(Scaled(Product(Values(emb.LoraEmbeddingB), Values(emb.LoraEmbeddingA), 32, 4, 64), s), 32, 64);
        AssertClose(Add(e0, embDelta), Values(emb.Weight), 1e-6, "embedding E'", 1e-3);

        var after = Values(model.call(ids, null));
        AssertClose(before.Select(v => (double)v).ToArray(), after, 1e-4, "logits merged vs adapter branch", 1.0);
        Assert.IsEmpty(ModelMerge.MergeInPlace(model), "a merged layer is not merged twice");

        var unmerged = ModelMerge.UnmergeInPlace(model);
        Assert.HasCount(5, unmerged);
        Assert.IsTrue(q.AdapterEnabled);
        AssertClose(w0.Select(v => (double)v).ToArray(), Values(q.Weight), 1e-6, "unmerge(merge(W))", qScale);
        AssertClose(e0.Select(v => (double)v).ToArray(), Values(emb.Weight), 1e-6, "unmerge(merge(E))", eScale);
        AssertClose(before.Select(v => (double)v).ToArray(), Values(model.call(ids, null)), 1e-4, "logits after unmerge", 1.0);
    }

    [TestMethod]
    public void MergeInPlace_Dora_MatchesReferenceAndUnmergeRestoresExactly()
    {
        using var scope = NewDisposeScope();
        var model = LlamaForCausalLM.CreateRandom(TinyConfigs.Llama(), 4);
        LoraInjection.Apply(model, new PeftAdapterConfig { TargetModules = TargetModules.FromList("q_proj"), R = 2, Alpha = 4, UseDora = true });
        var q = (LoraLinear)LoraInjection.LoraLayers(model).Single(l => l.Path == Q).Layer;
        Randomize(q.LoraB, 7);
        Randomize(q.Magnitude!, 8);
        model.eval();
        var ids = tensor(new long[] { 3, 4, 5, 6 }, [1, 4]);
        var before = Values(model.call(ids, null));
        var w0 = Values(q.Weight);
        var m = Values(q.Magnitude!);

        ModelMerge.MergeInPlace(model);
        var v = Add(w0, Scaled(Product(Values(q.LoraB), Values(q.LoraA), 32, 2, 32), 2.0));
        var expected = new double[v.Length];
        for (int o = 0; o < 32; o++)
        {
            double norm = Math.Sqrt(Enumerable.Range(0, 32).Sum(i => v[o * 32 + i] * v[o * 32 + i]));
            for (int i = 0; i < 32; i++)
            {
                expected[o * 32 + i] = m[o] * v[o * 32 + i] / norm;
            }
        }
        AssertClose(expected, Values(q.Weight), 1e-6, "DoRA W'", 1e-3);
        AssertClose(before.Select(x => (double)x).ToArray(), Values(model.call(ids, null)), 1e-4, "DoRA logits", 1.0);

        ModelMerge.UnmergeInPlace(model);
        CollectionAssert.AreEqual(w0, Values(q.Weight), "DoRA unmerge restores the saved weight");
    }
}
