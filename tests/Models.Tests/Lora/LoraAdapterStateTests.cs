using OnnxLora.Core.Peft;
using OnnxLora.Models.Llama;
using OnnxLora.Models.Lora;
using static TorchSharp.torch;

namespace OnnxLora.Models.Tests.Lora;

[TestClass]
public sealed class LoraAdapterStateTests
{
    private static readonly PeftAdapterConfig Options = new()
    {
        TargetModules = TargetModules.FromList("q_proj", "down_proj", "embed_tokens"),
        R = 4,
        Alpha = 8,
    };

    private static LlamaForCausalLM Injected(PeftAdapterConfig options, long seed = 3, long injectionSeed = 0)
    {
        var model = LlamaForCausalLM.CreateRandom(TinyConfigs.Llama(), seed, std: 0.2);
        LoraInjection.Apply(model, options, injectionSeed);
        return model;
    }

    private static float[] Logits(LlamaForCausalLM model)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        model.eval();
        return model.forward(tensor(new long[] { 1, 5, 9, 33, 2, 60 }, [2, 3]), null).data<float>().ToArray();
    }

    private static void Perturb(LlamaForCausalLM model, ulong seed)
    {
        using var g = new Generator(seed);
        using var noGrad = no_grad();
        foreach (var (_, p) in LoraInjection.TrainableParameters(model))
        {
            p.normal_(0, 0.3, g);
        }
    }

    [TestMethod]
    public void Get_UsesPeftKeysAndShapes()
    {
        using var model = Injected(Options with { UseDora = false });
        var state = LoraAdapterState.Get(model);
        try
        {
            var shapes = state.ToDictionary(kv => kv.Key, kv => kv.Value.shape);
            CollectionAssert.AreEqual(new long[] { 4, 32 }, shapes["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"]);
            CollectionAssert.AreEqual(new long[] { 32, 4 }, shapes["base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"]);
            CollectionAssert.AreEqual(new long[] { 4, 48 }, shapes["base_model.model.model.layers.1.mlp.down_proj.lora_A.weight"]);
            CollectionAssert.AreEqual(new long[] { 4, 64 }, shapes["base_model.model.model.embed_tokens.lora_embedding_A"]);
            CollectionAssert.AreEqual(new long[] { 32, 4 }, shapes["base_model.model.model.embed_tokens.lora_embedding_B"]);
            Assert.HasCount(2 * 2 * 2 + 2, state);
        }
        finally
        {
            foreach (var t in state.Values)
            {
                t.Dispose();
            }
        }
    }

    [TestMethod]
    public void Get_WithDora_IncludesMagnitudeVectorWithoutWeightSuffix()
    {
        using var model = Injected(new PeftAdapterConfig { TargetModules = TargetModules.FromList("v_proj"), R = 2, UseDora = true });
        var keys = LoraAdapterState.Entries(model).Select(e => e.Key).ToList();
        CollectionAssert.Contains(keys, "base_model.model.model.layers.0.self_attn.v_proj.lora_magnitude_vector");
        Assert.AreEqual(16L, LoraAdapterState.Entries(model).Single(e => e.Key.EndsWith("layers.0.self_attn.v_proj.lora_magnitude_vector", StringComparison.Ordinal)).Parameter.shape[0]);
    }

    [TestMethod]
    public void GetThenLoad_IntoFreshlyInjectedModel_ReproducesOutputs()
    {
        var options = new PeftAdapterConfig { TargetModules = TargetModules.FromList("q_proj", "o_proj", "embed_tokens"), R = 2, UseRsLora = true, ModulesToSave = ["lm_head"] };
        using var trained = Injected(options);
        Perturb(trained, 11);
        var expected = Logits(trained);
        var state = LoraAdapterState.Get(trained);
        try
        {
            using var fresh = Injected(options, injectionSeed: 99);
            Assert.IsFalse(Logits(fresh).SequenceEqual(expected), "the comparison must be able to fail");
            LoraAdapterState.Load(fresh, state, "memory");
            CollectionAssert.AreEqual(expected, Logits(fresh));
        }
        finally
        {
            foreach (var t in state.Values)
            {
                t.Dispose();
            }
        }
    }

    [TestMethod]
    public void Load_DoraMagnitudeWithWeightSuffix_IsAccepted()
    {
        var options = new PeftAdapterConfig { TargetModules = TargetModules.FromList("v_proj"), R = 2, UseDora = true };
        using var trained = Injected(options);
        Perturb(trained, 5);
        var state = LoraAdapterState.Get(trained).ToDictionary(kv => kv.Key.EndsWith("lora_magnitude_vector", StringComparison.Ordinal) ? kv.Key + ".weight" : kv.Key, kv => kv.Value);
        using var fresh = Injected(options);
        LoraAdapterState.Load(fresh, state, "memory");
        CollectionAssert.AreEqual(Logits(trained), Logits(fresh));
        foreach (var t in state.Values)
        {
            t.Dispose();
        }
    }

    [TestMethod]
    public void Load_MismatchedTensors_ListsEveryProblemWithSource()
    {
        using var model = Injected(Options);
        var state = LoraAdapterState.Get(model);
        using var extra = zeros(3);
        using var wrongShape = zeros(4, 31);
        state.Remove("base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight", out var removed);
        removed!.Dispose();
        state["base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight"] = extra;
        state["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"].Dispose();
        state["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"] = wrongShape;

        var ex = BadInput.Throws(() => LoraAdapterState.Load(model, state, "/tmp/adapter_model.safetensors"));
        StringAssert.Contains(ex.Message, "/tmp/adapter_model.safetensors");
        StringAssert.Contains(ex.Message, "missing 'base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight' (expected shape [32, 4])");
        StringAssert.Contains(ex.Message, "unexpected 'base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight'");
        StringAssert.Contains(ex.Message, "'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight': shape [4, 31], expected [4, 32]");
        foreach (var (key, t) in state)
        {
            if (!ReferenceEquals(t, extra) && !ReferenceEquals(t, wrongShape))
            {
                t.Dispose();
            }
        }
    }

    [TestMethod]
    public void Load_IntoModelWithoutAdapters_Throws()
    {
        using var model = LlamaForCausalLM.CreateRandom(TinyConfigs.Llama(), 1);
        Assert.ThrowsExactly<InvalidOperationException>(() => LoraAdapterState.Load(model, new Dictionary<string, Tensor>(), "x"));
    }

    [TestMethod]
    public void SaveCheckpoint_OfInjectedModel_WritesBaseWeightsUnderHfNames()
    {
        using var dir = new TempDir();
        using var model = Injected(Options);
        var before = Logits(model);
        model.SaveCheckpoint(dir.Path);
        using var reloaded = LlamaForCausalLM.FromPretrained(dir.Path);
        CollectionAssert.AreEqual(before, Logits(reloaded), "fresh adapters change nothing, so the base model must give the same logits");
        var names = reloaded.named_parameters().Select(p => p.name).ToList();
        Assert.IsFalse(names.Any(n => n.Contains("lora", StringComparison.Ordinal) || n.Contains("base_layer", StringComparison.Ordinal)));
    }
}
