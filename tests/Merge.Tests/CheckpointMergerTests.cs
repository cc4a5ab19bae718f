using System.Text.Json;
using OnnxLora.Core;
using OnnxLora.Core.Peft;
using OnnxLora.Core.Safetensors;
using static OnnxLora.Merge.Tests.TestData;

namespace OnnxLora.Merge.Tests;

[TestClass]
public sealed class CheckpointMergerTests
{
    private const string Q0 = "model.layers.0.self_attn.q_proj";
    private const string Q1 = "model.layers.1.self_attn.q_proj";
    private const int H = 8;

    private sealed record Fixture(string Checkpoint, Dictionary<string, float[]> Stored, PeftAdapter Adapter, float[] A0, float[] B0, float[] A1, float[] B1);

    /// <summary>Two shards: layer 0 in fp16, layer 1 in bf16, plus an int64 buffer and a norm in fp32.</summary>
    private static Fixture Build(float nanAt = float.NaN, bool poisonLayer1 = false)
    {
        var w0 = Random(H * H, 1);
        var w1 = Random(H * H, 2);
        var norm = Random(H, 3);
        var emb = Random(16 * H, 4);
        var shards = new List<IReadOnlyList<(string, DType, long[], float[])>>
        {
            new List<(string, DType, long[], float[])>
            {
                ("model.embed_tokens.weight", DType.F16, [16, H], emb),
                (Q0 + ".weight", DType.F16, [H, H], w0),
                ("model.layers.0.input_layernorm.weight", DType.F32, [H], norm),
            },
            new List<(string, DType, long[], float[])>
            {
                (Q1 + ".weight", DType.BF16, [H, H], w1),
            },
        };
        string ckpt = Checkpoint(shards);
        var stored = new Dictionary<string, float[]>
        {
            [Q0 + ".weight"] = Stored(w0, DType.F16),
            [Q1 + ".weight"] = Stored(w1, DType.BF16),
        };
        var a0 = Random(2 * H, 10);
        var b0 = Random(H * 2, 11);
        var a1 = Random(2 * H, 12);
        var b1 = Random(H * 2, 13);
        if (poisonLayer1)
        {
            a1[3] = nanAt;
        }
        var adapter = Adapter(new PeftAdapterConfig { R = 2, Alpha = 4, TargetModules = TargetModules.FromList(["q_proj"]) },
            (Key(Q0, ".lora_A.weight"), [2, H], a0), (Key(Q0, ".lora_B.weight"), [H, 2], b0),
            (Key(Q1, ".lora_A.weight"), [2, H], a1), (Key(Q1, ".lora_B.weight"), [H, 2], b1));
        return new Fixture(ckpt, stored, adapter, a0, b0, a1, b1);
    }

    [TestMethod]
    public void Merge_ShardedFp16Bf16_KeepsLayoutAndMergesExactly()
    {
        var f = Build();
        using var _ = f.Adapter;
        string output = Path.Combine(NewDir(), "merged");
        var result = CheckpointMerger.Merge(f.Checkpoint, [new(f.Adapter)], output);
        Assert.AreEqual(2, result.TensorsMerged);
        Assert.AreEqual(2, result.TensorsCopied);

        // Same files, same index, same keys/dtypes/shapes/metadata.
        CollectionAssert.AreEquivalent(
            Directory.GetFiles(f.Checkpoint).Select(Path.GetFileName).ToList(),
            Directory.GetFiles(output).Select(Path.GetFileName).ToList());
        using var before = SafetensorsCheckpoint.Open(f.Checkpoint);
        using var after = SafetensorsCheckpoint.Open(output);
        Assert.HasCount(before.Shards.Count, after.Shards);
        for (int s = 0; s < before.Shards.Count; s++)
        {
            Assert.AreEqual(Path.GetFileName(before.Shards[s].Path), Path.GetFileName(after.Shards[s].Path));
            CollectionAssert.AreEqual(before.Shards[s].Tensors.Select(t => t.Spec).ToList(), after.Shards[s].Tensors.Select(t => t.Spec).ToList(),
                new SpecComparer());
            CollectionAssert.AreEquivalent(before.Shards[s].Metadata.ToList(), after.Shards[s].Metadata.ToList());
        }
        using (var idx = JsonDocument.Parse(File.ReadAllText(Path.Combine(output, SafetensorsCheckpoint.IndexFileName))))
        {
            var map = idx.RootElement.GetProperty("weight_map");
            Assert.AreEqual("model-00002-of-00002.safetensors", map.GetProperty(Q1 + ".weight").GetString());
            Assert.AreEqual(before.Tensors.Sum(t => t.ByteLength), idx.RootElement.GetProperty("metadata").GetProperty("total_size").GetInt64());
        }
        Assert.AreEqual(File.ReadAllText(Path.Combine(f.Checkpoint, "config.json")), File.ReadAllText(Path.Combine(output, "config.json")));

        // Untouched tensors are byte-identical.
        foreach (string name in new[] { "model.embed_tokens.weight", "model.layers.0.input_layernorm.weight" })
        {
            var (bf, bt) = before.Locate(name);
            var (af, at) = after.Locate(name);
            CollectionAssert.AreEqual(bf.GetBytes(bt).ToArray(), af.GetBytes(at).ToArray(), name);
        }

        // Merged tensors: fp64 reference, then one rounding to the stored dtype.
        var e0 = Add(f.Stored[Q0 + ".weight"], Scaled(Product(f.B0, f.A0, H, 2, H), 2.0));
        var e1 = Add(f.Stored[Q1 + ".weight"], Scaled(Product(f.B1, f.A1, H, 2, H), 2.0));
        AssertClose(e0, after.ReadSingles(Q0 + ".weight"), Math.Pow(2, -11), "fp16 merged");
        AssertClose(e1, after.ReadSingles(Q1 + ".weight"), Math.Pow(2, -8), "bf16 merged");
        Assert.AreEqual(DType.F16, after.Locate(Q0 + ".weight").Tensor.DType);
        Assert.AreEqual(DType.BF16, after.Locate(Q1 + ".weight").Tensor.DType);
    }

    [TestMethod]
    public void Merge_OutputF32_ConvertsFloatTensorsOnly()
    {
        var f = Build();
        using var _ = f.Adapter;
        string output = Path.Combine(NewDir(), "merged32");
        CheckpointMerger.Merge(f.Checkpoint, [new(f.Adapter)], output, new MergeOptions { OutputDType = DType.F32 });
        using var after = SafetensorsCheckpoint.Open(output);
        Assert.IsTrue(after.Tensors.All(t => t.DType == DType.F32));
        var e0 = Add(f.Stored[Q0 + ".weight"], Scaled(Product(f.B0, f.A0, H, 2, H), 2.0));
        AssertClose(e0, after.ReadSingles(Q0 + ".weight"), 1e-6, "fp32 merged");
        using var before = SafetensorsCheckpoint.Open(f.Checkpoint);
        CollectionAssert.AreEqual(before.ReadSingles("model.embed_tokens.weight"), after.ReadSingles("model.embed_tokens.weight"));
    }

    [TestMethod]
    public void Merge_NaNInSafeMode_NamesTensorAndLeavesNoOutput()
    {
        // The poisoned module is in the second shard, so the first shard is already written when it fails.
        var f = Build(float.NaN, poisonLayer1: true);
        using var _ = f.Adapter;
        string parent = NewDir();
        string output = Path.Combine(parent, "merged");
        var e = BadInput.Throws(() => CheckpointMerger.Merge(f.Checkpoint, [new(f.Adapter)], output));
        StringAssert.Contains(e.Message, $"tensor '{Q1}.weight'");
        StringAssert.Contains(e.Message, "NaN");
        Assert.IsFalse(Directory.Exists(output));
        Assert.IsEmpty(Directory.GetFileSystemEntries(parent), "no temporary folder left behind");
    }

    [TestMethod]
    public void Merge_NaNWithSafeModeOff_WritesIt()
    {
        var f = Build(float.NaN, poisonLayer1: true);
        using var _ = f.Adapter;
        string output = Path.Combine(NewDir(), "merged");
        CheckpointMerger.Merge(f.Checkpoint, [new(f.Adapter)], output, new MergeOptions { SafeMode = false });
        using var after = SafetensorsCheckpoint.Open(output);
        Assert.IsTrue(after.ReadSingles(Q1 + ".weight").Any(float.IsNaN));
    }

    [TestMethod]
    public void Merge_Fp16Overflow_IsRefusedInSafeMode()
    {
        var f = Build(1e6f, poisonLayer1: false);
        f.Adapter.Dispose();
        var big = Random(2 * H, 10).Select(x => x * 1e5f).ToArray();
        using var adapter = Adapter(new PeftAdapterConfig { R = 2, Alpha = 4 },
            (Key(Q0, ".lora_A.weight"), [2, H], big), (Key(Q0, ".lora_B.weight"), [H, 2], Random(H * 2, 11).Select(x => x * 10f).ToArray()));
        var e = BadInput.Throws(() => CheckpointMerger.Merge(f.Checkpoint, [new(adapter)], Path.Combine(NewDir(), "o")));
        StringAssert.Contains(e.Message, $"tensor '{Q0}.weight'");
        StringAssert.Contains(e.Message, "overflowing F16");
        AssertNamesAnOverflowingValue(e.Message);
    }

    /// <summary>The message's "{value} at element {index}" is the merged fp32 value: finite, beyond fp16's largest (65504).</summary>
    internal static void AssertNamesAnOverflowingValue(string message)
    {
        var m = System.Text.RegularExpressions.Regex.Match(message, @"(\S+) at element \d+");
        Assert.IsTrue(m.Success, message);
        float value = float.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        Assert.IsTrue(float.IsFinite(value) && Math.Abs(value) > 65504f, message);
    }

    [TestMethod]
    public void Merge_ExistingOutput_RequiresOverwrite()
    {
        var f = Build();
        using var _ = f.Adapter;
        string output = Path.Combine(NewDir(), "merged");
        CheckpointMerger.Merge(f.Checkpoint, [new(f.Adapter)], output);
        BadInput.Throws(() => CheckpointMerger.Merge(f.Checkpoint, [new(f.Adapter)], output));
        CheckpointMerger.Merge(f.Checkpoint, [new(f.Adapter, 0.0)], output, new MergeOptions { Overwrite = true });
        using var after = SafetensorsCheckpoint.Open(output);
        CollectionAssert.AreEqual(f.Stored[Q0 + ".weight"], after.ReadSingles(Q0 + ".weight"), "weight 0 leaves W unchanged");
    }

    [TestMethod]
    public void Plan_ModuleWithNoTensor_IsAnErrorNamingIt()
    {
        var f = Build();
        using var _ = f.Adapter;
        using var other = Adapter(new PeftAdapterConfig { R = 2, Alpha = 2 },
            (Key("model.layers.9.mlp.up_proj", ".lora_A.weight"), [2, H], Random(2 * H, 1)), (Key("model.layers.9.mlp.up_proj", ".lora_B.weight"), [H, 2], Random(2 * H, 2)));
        var e = BadInput.Throws(() => CheckpointMerger.Plan(f.Checkpoint, [new(other)]));
        StringAssert.Contains(e.Message, "module 'model.layers.9.mlp.up_proj' maps to no tensor");
    }

    [TestMethod]
    public void Plan_PrefixDifference_ResolvesOrReportsAmbiguity()
    {
        // Checkpoint saved without the "model." prefix (a bare base model).
        var w = Random(H * H, 1);
        string ckpt = Checkpoint([[("layers.0.self_attn.q_proj.weight", DType.F32, [H, H], w)]]);
        var f = Build();
        using var _ = f.Adapter;
        var plan = CheckpointMerger.Plan(ckpt, [new(SingleModule(f))]);
        Assert.AreEqual("layers.0.self_attn.q_proj.weight", plan.Entries.Single().TargetTensor);
        StringAssert.Contains(plan.Describe(), "model.layers.0.self_attn.q_proj -> layers.0.self_attn.q_proj.weight");

        string ambiguous = Checkpoint([[
            ("a.model.layers.0.self_attn.q_proj.weight", DType.F32, [H, H], w),
            ("b.model.layers.0.self_attn.q_proj.weight", DType.F32, [H, H], w)]]);
        var e = BadInput.Throws(() => CheckpointMerger.Plan(ambiguous, [new(SingleModule(f))]));
        StringAssert.Contains(e.Message, "maps to several tensors: 'a.model.layers.0.self_attn.q_proj.weight', 'b.model.layers.0.self_attn.q_proj.weight'");
    }

    [TestMethod]
    public void Plan_ShapeMismatch_IsAnError()
    {
        string ckpt = Checkpoint([[(Q0 + ".weight", DType.F32, [H, H + 1], Random(H * (H + 1), 1))]]);
        var f = Build();
        using var _ = f.Adapter;
        var e = BadInput.Throws(() => CheckpointMerger.Plan(ckpt, [new(SingleModule(f))]));
        StringAssert.Contains(e.Message, $"tensor '{Q0}.weight'");
        StringAssert.Contains(e.Message, "found shape [8, 9]");
    }

    [TestMethod]
    public void Merge_ModulesToSave_ReplacesTheTensor()
    {
        var f = Build();
        f.Adapter.Dispose();
        var norm = Random(H, 77);
        using var adapter = Adapter(new PeftAdapterConfig { R = 2, Alpha = 4, ModulesToSave = ["input_layernorm"] },
            (Key(Q0, ".lora_A.weight"), [2, H], f.A0), (Key(Q0, ".lora_B.weight"), [H, 2], f.B0),
            ("base_model.model.model.layers.0.input_layernorm.weight", [H], norm));
        string output = Path.Combine(NewDir(), "m");
        var result = CheckpointMerger.Merge(f.Checkpoint, [new(adapter)], output);
        Assert.AreEqual(1, result.TensorsReplaced);
        using var after = SafetensorsCheckpoint.Open(output);
        CollectionAssert.AreEqual(norm, after.ReadSingles("model.layers.0.input_layernorm.weight"));
    }

    private static PeftAdapter SingleModule(Fixture f) =>
        Adapter(new PeftAdapterConfig { R = 2, Alpha = 4 }, (Key(Q0, ".lora_A.weight"), [2, H], f.A0), (Key(Q0, ".lora_B.weight"), [H, 2], f.B0));

    private sealed class SpecComparer : System.Collections.IComparer
    {
        public int Compare(object? x, object? y) =>
            x is TensorSpec a && y is TensorSpec b && a.Name == b.Name && a.DType == b.DType && a.Shape.SequenceEqual(b.Shape) ? 0 : 1;
    }
}
