using System.Text.Json;
using OnnxLora.Core;
using OnnxLora.Core.HuggingFace;
using OnnxLora.Core.Safetensors;
using OnnxLora.Models.Bert;
using OnnxLora.Models.Llama;
using static TorchSharp.torch;

namespace OnnxLora.Models.Tests.Models;

[TestClass]
public sealed class CheckpointTests
{
    public static IEnumerable<object[]> LlamaConfigs =>
    [
        [TinyConfigs.Llama()],
        [TinyConfigs.Qwen2()],
        [TinyConfigs.Llama() with { AttentionBias = true, MlpBias = true, TieWordEmbeddings = true }],
        [TinyConfigs.Llama() with { ModelType = "mistral", SlidingWindow = 4 }],
    ];

    [TestMethod]
    [DynamicData(nameof(LlamaConfigs))]
    public void Llama_NamedParameters_AreTheHuggingFaceNamesAndShapes(LlamaConfig config)
    {
        using var model = new LlamaForCausalLM(config);
        var actual = model.named_parameters().Select(p => $"{p.name} [{string.Join(", ", p.parameter.shape)}]").ToList();
        var expected = ExpectedLlamaNames(config);
        CollectionAssert.AreEquivalent(expected, actual);
    }

    [TestMethod]
    public void Bert_NamedParameters_AreTheHuggingFaceNames()
    {
        var config = TinyConfigs.Bert();
        using var model = new BertModel(config);
        var names = model.named_parameters().Select(p => p.name).ToHashSet();
        Assert.HasCount(5 + 2 * 16 + 2, names);
        foreach (string name in new[]
        {
            "embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight", "embeddings.token_type_embeddings.weight",
            "embeddings.LayerNorm.weight", "embeddings.LayerNorm.bias",
            "encoder.layer.1.attention.self.query.weight", "encoder.layer.1.attention.self.key.bias", "encoder.layer.1.attention.self.value.weight",
            "encoder.layer.1.attention.output.dense.weight", "encoder.layer.1.attention.output.LayerNorm.weight",
            "encoder.layer.1.intermediate.dense.weight", "encoder.layer.1.output.dense.bias", "encoder.layer.1.output.LayerNorm.bias",
            "pooler.dense.weight", "pooler.dense.bias",
        })
        {
            Assert.Contains(name, names);
        }
        using var withoutPooler = new BertModel(config, addPoolingLayer: false);
        Assert.IsFalse(withoutPooler.named_parameters().Any(p => p.name.StartsWith("pooler", StringComparison.Ordinal)));
    }

    /// <summary>The HF names written out by hand from the transformers modeling code.</summary>
    private static List<string> ExpectedLlamaNames(LlamaConfig c)
    {
        bool qkvBias = c.ModelType == "qwen2" || c.AttentionBias;
        bool oBias = c.ModelType != "qwen2" && c.AttentionBias;
        int q = c.NumAttentionHeads * c.HeadDim, kv = c.NumKeyValueHeads * c.HeadDim, h = c.HiddenSize, m = c.IntermediateSize;
        var names = new List<string> { $"model.embed_tokens.weight [{c.VocabSize}, {h}]", $"model.norm.weight [{h}]" };
        for (int i = 0; i < c.NumHiddenLayers; i++)
        {
            string p = $"model.layers.{i}.";
            names.Add($"{p}self_attn.q_proj.weight [{q}, {h}]");
            names.Add($"{p}self_attn.k_proj.weight [{kv}, {h}]");
            names.Add($"{p}self_attn.v_proj.weight [{kv}, {h}]");
            names.Add($"{p}self_attn.o_proj.weight [{h}, {q}]");
            if (qkvBias)
            {
                names.Add($"{p}self_attn.q_proj.bias [{q}]");
                names.Add($"{p}self_attn.k_proj.bias [{kv}]");
                names.Add($"{p}self_attn.v_proj.bias [{kv}]");
            }
            if (oBias)
            {
                names.Add($"{p}self_attn.o_proj.bias [{h}]");
            }
            names.Add($"{p}mlp.gate_proj.weight [{m}, {h}]");
            names.Add($"{p}mlp.up_proj.weight [{m}, {h}]");
            names.Add($"{p}mlp.down_proj.weight [{h}, {m}]");
            if (c.MlpBias)
            {
                names.Add($"{p}mlp.gate_proj.bias [{m}]");
                names.Add($"{p}mlp.up_proj.bias [{m}]");
                names.Add($"{p}mlp.down_proj.bias [{h}]");
            }
            names.Add($"{p}input_layernorm.weight [{h}]");
            names.Add($"{p}post_attention_layernorm.weight [{h}]");
        }
        if (!c.TieWordEmbeddings)
        {
            names.Add($"lm_head.weight [{c.VocabSize}, {h}]");
        }
        return names;
    }

    [TestMethod]
    public void SaveCheckpoint_TiedModel_OmitsLmHeadAndRecordsDtype()
    {
        using var dir = new TempDir();
        using (var model = LlamaForCausalLM.CreateRandom(TinyConfigs.Qwen2(), seed: 1))
        {
            model.SaveCheckpoint(dir.Path, DType.BF16);
        }
        using var checkpoint = SafetensorsCheckpoint.Open(dir.Path);
        Assert.IsFalse(checkpoint.Contains("lm_head.weight"));
        Assert.IsTrue(checkpoint.Tensors.All(t => t.DType == DType.BF16));
        Assert.AreEqual("bfloat16", LlamaConfig.Load(dir.Path).TorchDtype);
    }

    [TestMethod]
    public void FromPretrained_Bf16AndF16Checkpoints_LoadTheRoundedValues()
    {
        foreach (var dtype in new[] { DType.BF16, DType.F16 })
        {
            using var dir = new TempDir();
            float[] original;
            using (var model = LlamaForCausalLM.CreateRandom(TinyConfigs.Llama(), seed: 4, std: 0.3))
            {
                original = model.Model.Layers[0].SelfAttn.QProj.named_parameters().Single(p => p.name == "weight").parameter.data<float>().ToArray();
                model.SaveCheckpoint(dir.Path, dtype);
            }
            using var loaded = LlamaForCausalLM.FromPretrained(dir.Path);
            var values = loaded.Model.Layers[0].SelfAttn.QProj.named_parameters().Single(p => p.name == "weight").parameter.data<float>().ToArray();
            for (int i = 0; i < values.Length; i++)
            {
                float rounded = dtype == DType.F16 ? (float)(Half)original[i] : BitConverter.Int32BitsToSingle((int)(RoundToBf16(original[i]) << 16));
                Assert.AreEqual(rounded, values[i], $"{dtype} element {i}");
            }
        }
    }

    /// <summary>fp32 → bf16 bits, round to nearest even (written independently of Core's converter).</summary>
    private static uint RoundToBf16(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        uint lsb = (bits >> 16) & 1;
        return (bits + 0x7FFF + lsb) >> 16;
    }

    [TestMethod]
    public void FromPretrained_ShardedCheckpoint_LoadsLikeSingleFile()
    {
        using var single = new TempDir();
        using var sharded = new TempDir();
        var config = TinyConfigs.Llama();
        using (var model = LlamaForCausalLM.CreateRandom(config, seed: 8, std: 0.2))
        {
            model.SaveCheckpoint(single.Path);
        }
        // Split into two shards with an index, the way save_pretrained does.
        var weightMap = new Dictionary<string, string>();
        using (var checkpoint = SafetensorsCheckpoint.Open(single.Path))
        {
            var all = checkpoint.Tensors.ToList();
            for (int shard = 0; shard < 2; shard++)
            {
                string file = $"model-0000{shard + 1}-of-00002.safetensors";
                var part = all.Where((_, i) => i % 2 == shard).ToList();
                SafetensorsWriter.Save(Path.Combine(sharded.Path, file), part.Select(t =>
                {
                    var (f, info) = checkpoint.Locate(t.Name);
                    return (t.Spec, (ReadOnlyMemory<byte>)f.GetBytes(info).ToArray());
                }));
                foreach (var t in part)
                {
                    weightMap[t.Name] = file;
                }
            }
        }
        File.WriteAllText(Path.Combine(sharded.Path, "model.safetensors.index.json"), JsonSerializer.Serialize(new { metadata = new { total_size = 0 }, weight_map = weightMap }));
        config.Save(sharded.Path);

        using var a = LlamaForCausalLM.FromPretrained(single.Path);
        using var b = LlamaForCausalLM.FromPretrained(sharded.Path);
        var pa = a.named_parameters().ToList();
        var pb = b.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var (name, p) in pa)
        {
            CollectionAssert.AreEqual(p.data<float>().ToArray(), pb[name].data<float>().ToArray(), name);
        }
    }

    [TestMethod]
    public void FromPretrained_MismatchedWeights_ListsAllProblems()
    {
        using var dir = new TempDir();
        var config = TinyConfigs.Llama();
        var tensors = new List<(TensorSpec, ReadOnlyMemory<byte>)>();
        using (var model = LlamaForCausalLM.CreateRandom(config, seed: 1))
        {
            model.SaveCheckpoint(dir.Path);
        }
        using (var checkpoint = SafetensorsCheckpoint.Open(dir.Path))
        {
            foreach (var t in checkpoint.Tensors)
            {
                if (t.Name is "model.layers.1.mlp.up_proj.weight" or "model.norm.weight")
                {
                    continue; // missing
                }
                var (f, info) = checkpoint.Locate(t.Name);
                var spec = t.Name == "model.layers.0.self_attn.k_proj.weight" ? new TensorSpec(t.Name, DType.F32, [8, 32]) : t.Spec;
                var bytes = t.Name == "model.layers.0.self_attn.k_proj.weight" ? new byte[8 * 32 * 4] : f.GetBytes(info).ToArray();
                tensors.Add((spec, bytes));
            }
        }
        tensors.Add((new TensorSpec("model.layers.0.self_attn.extra.weight", DType.F32, [2]), new byte[8]));
        SafetensorsWriter.Save(Path.Combine(dir.Path, "model.safetensors"), tensors, overwrite: true);

        var ex = BadInput.Throws(() => LlamaForCausalLM.FromPretrained(dir.Path));
        StringAssert.Contains(ex.Message, dir.Path);
        StringAssert.Contains(ex.Message, "4 problems");
        StringAssert.Contains(ex.Message, "missing 'model.layers.1.mlp.up_proj.weight' (expected shape [48, 32])");
        StringAssert.Contains(ex.Message, "missing 'model.norm.weight' (expected shape [32])");
        StringAssert.Contains(ex.Message, "'model.layers.0.self_attn.k_proj.weight': shape [8, 32], expected [16, 32]");
        StringAssert.Contains(ex.Message, "unexpected 'model.layers.0.self_attn.extra.weight' (shape [2])");
    }

    [TestMethod]
    public void FromPretrained_OtherFamily_ThrowsNamingModelType()
    {
        using var dir = new TempDir();
        using (var bert = BertModel.CreateRandom(TinyConfigs.Bert(), seed: 1))
        {
            bert.SaveCheckpoint(dir.Path);
        }
        var ex = BadInput.Throws(() => LlamaForCausalLM.FromPretrained(dir.Path));
        StringAssert.Contains(ex.Message, "config.json");
        StringAssert.Contains(ex.Message, "model_type");
        StringAssert.Contains(ex.Message, "\"bert\"");
    }

    [TestMethod]
    public void FromPretrained_HugeLayerCount_IsRejectedBeforeBuildingTheLayout()
    {
        using var dir = new TempDir();
        using (var model = LlamaForCausalLM.CreateRandom(TinyConfigs.Llama(), seed: 1))
        {
            model.SaveCheckpoint(dir.Path);
        }
        (TinyConfigs.Llama() with { NumHiddenLayers = 2_000_000_000 }).Save(dir.Path, overwrite: true);
        var ex = BadInput.Throws(() => LlamaForCausalLM.FromPretrained(dir.Path));
        StringAssert.Contains(ex.Message, "num_hidden_layers");
        StringAssert.Contains(ex.Message, "2000000000");
    }

    [TestMethod]
    public void FromPretrained_MissingFolder_IsBadInput()
    {
        using var dir = new TempDir();
        BadInput.Throws(() => LlamaForCausalLM.FromPretrained(dir.Sub("nope")));
    }

    [TestMethod]
    public void SaveCheckpoint_ExistingOutput_IsNotClobberedUnlessOverwrite()
    {
        using var dir = new TempDir();
        using var model = LlamaForCausalLM.CreateRandom(TinyConfigs.Llama(), seed: 1);
        model.SaveCheckpoint(dir.Path);
        var stamp = File.GetLastWriteTimeUtc(Path.Combine(dir.Path, "model.safetensors"));
        BadInput.Throws(() => model.SaveCheckpoint(dir.Path));
        Assert.AreEqual(stamp, File.GetLastWriteTimeUtc(Path.Combine(dir.Path, "model.safetensors")));
        model.SaveCheckpoint(dir.Path, overwrite: true);
        Assert.IsFalse(Directory.EnumerateFiles(dir.Path, "*.partial", SearchOption.AllDirectories).Any());
    }

    [TestMethod]
    public void CreateRandom_SameSeed_SameWeights_DifferentSeed_DifferentWeights()
    {
        using var a = LlamaForCausalLM.CreateRandom(TinyConfigs.Llama(), seed: 5);
        using var b = LlamaForCausalLM.CreateRandom(TinyConfigs.Llama(), seed: 5);
        using var c = LlamaForCausalLM.CreateRandom(TinyConfigs.Llama(), seed: 6);
        var wa = a.named_parameters().SelectMany(p => p.parameter.data<float>().ToArray()).ToArray();
        CollectionAssert.AreEqual(wa, b.named_parameters().SelectMany(p => p.parameter.data<float>().ToArray()).ToArray());
        CollectionAssert.AreNotEqual(wa, c.named_parameters().SelectMany(p => p.parameter.data<float>().ToArray()).ToArray());
    }

    [TestMethod]
    public void Forward_BadInputs_AreBadInput()
    {
        using var model = LlamaForCausalLM.CreateRandom(TinyConfigs.Llama(), seed: 1);
        using var scope = NewDisposeScope();
        var ex = BadInput.Throws(() => model.forward(tensor(new long[] { 1, 64 }, [1, 2]), null));
        StringAssert.Contains(ex.Message, "64");
        BadInput.Throws(() => model.forward(tensor(new float[] { 1, 2 }, [1, 2]), null));
        BadInput.Throws(() => model.forward(tensor(new long[] { 1, 2 }, [1, 2]), tensor(new long[] { 1, 1, 1 }, [1, 3])));
    }
}
