using OnnxLora.Core.Peft;
using OnnxLora.Models.Bert;
using OnnxLora.Models.Llama;
using OnnxLora.Models.Lora;
using static TorchSharp.torch;

namespace OnnxLora.Models.Tests.Lora;

[TestClass]
public sealed class LoraInjectionTests
{
    private static LlamaForCausalLM TinyLlama(bool tie = false) => LlamaForCausalLM.CreateRandom(TinyConfigs.Llama() with { TieWordEmbeddings = tie }, seed: 3, std: 0.2);

    private static float[] Logits(LlamaForCausalLM model)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        model.eval();
        return model.forward(tensor(new long[] { 1, 5, 9, 33, 2, 60 }, [2, 3]), null).data<float>().ToArray();
    }

    [TestMethod]
    public void Apply_NameList_WrapsMatchesWithPeftParameterNames()
    {
        using var model = TinyLlama();
        var report = LoraInjection.Apply(model, new PeftAdapterConfig { TargetModules = TargetModules.FromList("q_proj", "v_proj"), R = 4, Alpha = 8 });

        CollectionAssert.AreEquivalent(
            new[] { "model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj", "model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj" },
            report.Wrapped.Select(w => w.Path).ToArray());
        var names = model.named_parameters().Select(p => p.name).ToHashSet();
        Assert.Contains("model.layers.0.self_attn.q_proj.base_layer.weight", names);
        Assert.Contains("model.layers.0.self_attn.q_proj.lora_A.weight", names);
        Assert.Contains("model.layers.0.self_attn.q_proj.lora_B.weight", names);
        Assert.Contains("model.layers.0.self_attn.k_proj.weight", names);
        Assert.DoesNotContain("model.layers.0.self_attn.q_proj.weight", names);
        Assert.IsInstanceOfType<LoraLinear>(model.Model.Layers[1].SelfAttn.VProj);
        Assert.AreEqual(2.0, report.Wrapped[0].Scaling, 1e-12);
    }

    [TestMethod]
    public void Apply_FreshAdapters_LeaveLogitsUnchanged()
    {
        using var model = TinyLlama();
        var before = Logits(model);
        LoraInjection.Apply(model, new PeftAdapterConfig { TargetModules = TargetModules.AllLinear, R = 4, Alpha = 16 });
        CollectionAssert.AreEqual(before, Logits(model));
    }

    [TestMethod]
    public void Apply_FreezesAllButAdapters()
    {
        using var model = TinyLlama();
        var report = LoraInjection.Apply(model, new PeftAdapterConfig { TargetModules = TargetModules.FromList("o_proj"), R = 2, UseDora = true });
        var trainable = LoraInjection.TrainableParameters(model).Select(p => p.Name).ToList();
        CollectionAssert.AreEquivalent(new[]
        {
            "model.layers.0.self_attn.o_proj.lora_A.weight", "model.layers.0.self_attn.o_proj.lora_B.weight", "model.layers.0.self_attn.o_proj.lora_magnitude_vector",
            "model.layers.1.self_attn.o_proj.lora_A.weight", "model.layers.1.self_attn.o_proj.lora_B.weight", "model.layers.1.self_attn.o_proj.lora_magnitude_vector",
        }, trainable);
        long expected = 2 * (2 * 32 + 32 * 2 + 32);
        Assert.AreEqual(expected, report.TrainableParameterCount);
    }

    [TestMethod]
    public void Apply_Regex_MustMatchWholePath()
    {
        using var model = TinyLlama();
        var report = LoraInjection.Apply(model, new PeftAdapterConfig { TargetModules = TargetModules.FromString(@"model\.layers\.0\.self_attn\.(q|k)_proj") });
        CollectionAssert.AreEquivalent(new[] { "model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj" }, report.Wrapped.Select(w => w.Path).ToArray());

        using var other = TinyLlama();
        var ex = BadInput.Throws(() => LoraInjection.Apply(other, new PeftAdapterConfig { TargetModules = TargetModules.FromString("q_proj") }));
        StringAssert.Contains(ex.Message, "\"q_proj\"");
    }

    [TestMethod]
    public void Apply_AllLinearOnCausalLm_SkipsOutputHead()
    {
        using var model = TinyLlama();
        var report = LoraInjection.Apply(model, new PeftAdapterConfig { TargetModules = TargetModules.AllLinear });
        Assert.HasCount(2 * 7, report.Wrapped);
        Assert.IsFalse(report.Wrapped.Any(w => w.Path == "lm_head"));
    }

    [TestMethod]
    public void Apply_AllLinearOnBert_WrapsQueryKeyValueAndDenseIncludingPooler()
    {
        using var model = BertModel.CreateRandom(TinyConfigs.Bert(), seed: 1);
        var report = LoraInjection.Apply(model, new PeftAdapterConfig { TargetModules = TargetModules.AllLinear });
        Assert.HasCount(2 * 6 + 1, report.Wrapped);
        Assert.IsTrue(report.Wrapped.Any(w => w.Path == "pooler.dense"));
        Assert.IsTrue(report.Wrapped.Any(w => w.Path == "encoder.layer.1.intermediate.dense"));
    }

    [TestMethod]
    public void Apply_SuffixMatchesWholeComponentsOnly()
    {
        using var model = TinyLlama();
        var ex = BadInput.Throws(() => LoraInjection.Apply(model, new PeftAdapterConfig { TargetModules = TargetModules.FromList("q_proj", "proj", "nonexistent") }));
        StringAssert.Contains(ex.Message, "'proj', 'nonexistent'");
        Assert.DoesNotContain("'q_proj'", ex.Message);

        var report = LoraInjection.Apply(model, new PeftAdapterConfig { TargetModules = TargetModules.FromList("layers.1.mlp.up_proj") });
        Assert.AreEqual("model.layers.1.mlp.up_proj", report.Wrapped.Single().Path);
    }

    [TestMethod]
    public void Apply_RankAndAlphaPatterns_FirstMatchingKeyInOrderWins()
    {
        using var model = TinyLlama();
        var report = LoraInjection.Apply(model, new PeftAdapterConfig
        {
            TargetModules = TargetModules.FromList("q_proj", "v_proj"),
            R = 8,
            Alpha = 8,
            RankPattern = new OrderedDictionary<string, int> { ["layers.0.self_attn.q_proj"] = 4, ["q_proj"] = 2 },
            AlphaPattern = new OrderedDictionary<string, double> { [@"model\.layers\.1\..*"] = 32.0 },
        });
        var byPath = report.Wrapped.ToDictionary(w => w.Path);
        Assert.AreEqual(4, byPath["model.layers.0.self_attn.q_proj"].Rank);
        Assert.AreEqual(2, byPath["model.layers.1.self_attn.q_proj"].Rank);
        Assert.AreEqual(8, byPath["model.layers.0.self_attn.v_proj"].Rank);
        Assert.AreEqual(8.0, byPath["model.layers.0.self_attn.q_proj"].Alpha);
        Assert.AreEqual(32.0, byPath["model.layers.1.self_attn.v_proj"].Alpha);
        Assert.AreEqual(2L, ((LoraLinear)model.Model.Layers[1].SelfAttn.QProj).LoraA.shape[0]);

        using var reversed = TinyLlama();
        var report2 = LoraInjection.Apply(reversed, new PeftAdapterConfig
        {
            TargetModules = TargetModules.FromList("q_proj"),
            RankPattern = new OrderedDictionary<string, int> { ["q_proj"] = 2, ["layers.0.self_attn.q_proj"] = 4 },
        });
        Assert.IsTrue(report2.Wrapped.All(w => w.Rank == 2));
    }

    [TestMethod]
    public void Apply_PatternKeyMustMatchAtComponentBoundary()
    {
        using var model = TinyLlama();
        var report = LoraInjection.Apply(model, new PeftAdapterConfig { TargetModules = TargetModules.FromList("q_proj"), RankPattern = new OrderedDictionary<string, int> { ["_proj"] = 3 } });
        Assert.IsTrue(report.Wrapped.All(w => w.Rank == 8));
    }

    [TestMethod]
    public void Apply_ModulesToSave_MakesThemTrainableAndSavesThemWhole()
    {
        using var model = TinyLlama();
        var report = LoraInjection.Apply(model, new PeftAdapterConfig { TargetModules = TargetModules.FromList("q_proj"), ModulesToSave = ["lm_head", "norm"] });
        CollectionAssert.AreEquivalent(new[] { "lm_head", "model.norm" }, report.ModulesToSave.ToArray());
        var trainable = LoraInjection.TrainableParameters(model).Select(p => p.Name).ToHashSet();
        Assert.Contains("lm_head.weight", trainable);
        Assert.Contains("model.norm.weight", trainable);
        Assert.DoesNotContain("model.layers.0.input_layernorm.weight", trainable);
        var keys = LoraAdapterState.Entries(model).Select(e => e.Key).ToHashSet();
        Assert.Contains("base_model.model.lm_head.weight", keys);
        Assert.Contains("base_model.model.model.norm.weight", keys);
        Assert.Contains("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", keys);
    }

    [TestMethod]
    public void Apply_UnmatchedModulesToSave_ThrowsNamingIt()
    {
        using var model = TinyLlama();
        var ex = BadInput.Throws(() => LoraInjection.Apply(model, new PeftAdapterConfig { TargetModules = TargetModules.FromList("q_proj"), ModulesToSave = ["classifier"] }));
        StringAssert.Contains(ex.Message, "'classifier'");
    }

    [TestMethod]
    public void Apply_TargetThatIsNotLinearOrEmbedding_ThrowsNamingIt()
    {
        using var model = TinyLlama();
        var ex = BadInput.Throws(() => LoraInjection.Apply(model, new PeftAdapterConfig { TargetModules = TargetModules.FromList("self_attn") }));
        StringAssert.Contains(ex.Message, "model.layers.0.self_attn");
        StringAssert.Contains(ex.Message, "LlamaAttention");
    }

    [TestMethod]
    public void Apply_DoraOnEmbedding_Throws()
    {
        using var model = TinyLlama();
        var ex = BadInput.Throws(() => LoraInjection.Apply(model, new PeftAdapterConfig { TargetModules = TargetModules.FromList("embed_tokens"), UseDora = true }));
        StringAssert.Contains(ex.Message, "model.embed_tokens");
    }

    [TestMethod]
    public void Apply_Twice_Throws()
    {
        using var model = TinyLlama();
        LoraInjection.Apply(model, new PeftAdapterConfig { TargetModules = TargetModules.FromList("q_proj") });
        Assert.ThrowsExactly<InvalidOperationException>(() => LoraInjection.Apply(model, new PeftAdapterConfig { TargetModules = TargetModules.FromList("k_proj") }));
    }

    [TestMethod]
    public void Apply_BadOptions_AreBadInput()
    {
        using var model = TinyLlama();
        BadInput.Throws(() => LoraInjection.Apply(model, new PeftAdapterConfig { TargetModules = TargetModules.FromList("q_proj"), R = 0 }));
        BadInput.Throws(() => LoraInjection.Apply(model, new PeftAdapterConfig { TargetModules = TargetModules.FromList("q_proj"), LoraDropout = 1.0 }));
        BadInput.Throws(() => LoraInjection.Apply(model, new PeftAdapterConfig { TargetModules = TargetModules.FromList() }));
        var ex = BadInput.Throws(() => LoraInjection.Apply(model, new PeftAdapterConfig { TargetModules = TargetModules.FromString("(unclosed") }));
        StringAssert.Contains(ex.Message, "(unclosed");
    }

    [TestMethod]
    public void Apply_SameSeed_GivesSameAdapters()
    {
        using var a = TinyLlama();
        using var b = TinyLlama();
        var options = new PeftAdapterConfig { TargetModules = TargetModules.FromList("q_proj", "embed_tokens") };
        LoraInjection.Apply(a, options, seed: 42);
        LoraInjection.Apply(b, options, seed: 42);
        var sa = LoraAdapterState.Entries(a);
        var sb = LoraAdapterState.Entries(b);
        Assert.HasCount(sa.Count, sb);
        for (int i = 0; i < sa.Count; i++)
        {
            Assert.AreEqual(sa[i].Key, sb[i].Key);
            CollectionAssert.AreEqual(sa[i].Parameter.data<float>().ToArray(), sb[i].Parameter.data<float>().ToArray());
        }
    }

    [TestMethod]
    public void Apply_EmbeddingOnTiedModel_KeepsHeadSharingBaseWeight()
    {
        using var model = TinyLlama(tie: true);
        var before = Logits(model);
        LoraInjection.Apply(model, new PeftAdapterConfig { TargetModules = TargetModules.FromList("embed_tokens"), R = 2 });
        CollectionAssert.AreEqual(before, Logits(model));
        var names = model.named_parameters().Select(p => p.name).ToList();
        CollectionAssert.Contains(names, "model.embed_tokens.base_layer.weight");
        CollectionAssert.Contains(names, "model.embed_tokens.lora_embedding_A");
        CollectionAssert.DoesNotContain(names, "lm_head.weight");
    }
}
