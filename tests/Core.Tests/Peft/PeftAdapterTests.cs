using System.Text;
using OnnxLora.Core.Peft;
using OnnxLora.Core.Safetensors;
using static OnnxLora.Core.Tests.Peft.PeftTestFiles;

namespace OnnxLora.Core.Tests.Peft;

[TestClass]
public sealed class PeftAdapterTests
{
    private const string Q = "model.layers.0.self_attn.q_proj";
    private const string V = "model.layers.0.self_attn.v_proj";

    [ClassCleanup]
    public static void Cleanup() => DeleteAll();

    [TestMethod]
    public void SaveThenLoad_RoundTrips_ValuesConfigAndModules()
    {
        var config = new PeftAdapterConfig
        {
            TaskType = "CAUSAL_LM",
            BaseModelNameOrPath = "tiny",
            R = 2,
            Alpha = 4,
            UseDora = true,
            TargetModules = TargetModules.FromList(["q_proj", "v_proj", "embed_tokens"]),
            ModulesToSave = ["score"],
            RankPattern = new OrderedDictionary<string, int> { ["v_proj"] = 3 },
            AlphaPattern = new OrderedDictionary<string, double> { ["v_proj"] = 1.5 },
        };
        var aQ = Values(2 * 6, 1);
        var bQ = Values(5 * 2, 2);
        var mQ = Values(5, 3);
        var tensors = new List<(TensorSpec, ReadOnlyMemory<byte>)>
        {
            PeftAdapter.EncodeTensor($"base_model.model.{Q}.lora_A.weight", [2, 6], aQ),
            PeftAdapter.EncodeTensor($"base_model.model.{Q}.lora_B.weight", [5, 2], bQ),
            PeftAdapter.EncodeTensor($"base_model.model.{Q}.lora_magnitude_vector", [5], mQ),
            F32($"base_model.model.{V}.lora_A.weight", [3, 6], 4),
            F32($"base_model.model.{V}.lora_B.weight", [4, 3], 5),
            F32($"base_model.model.{V}.lora_magnitude_vector", [4], 6),
            F32("base_model.model.model.embed_tokens.lora_embedding_A", [2, 10], 7),
            F32("base_model.model.model.embed_tokens.lora_embedding_B", [6, 2], 8),
            F32("base_model.model.score.weight", [2, 6], 9),
        };
        string dir = Path.Combine(NewDir(), "out");
        PeftAdapter.Save(dir, config, tensors);

        using var adapter = PeftAdapter.Load(dir);
        Assert.AreEqual(config.ToJson(), adapter.Config.ToJson());
        Assert.AreEqual("pt", adapter.Weights.Metadata["format"]);
        Assert.HasCount(3, adapter.Modules);

        var q = adapter.Get(Q);
        Assert.AreEqual(AdapterModuleKind.Lora, q.Kind);
        Assert.AreEqual(2, q.Rank);
        Assert.AreEqual(2.0, q.Scaling, 1e-12);
        Assert.IsTrue(q.UseDora);
        Assert.AreEqual(6, q.InFeatures);
        Assert.AreEqual(5, q.OutFeatures);
        CollectionAssert.AreEqual(new long[] { 5, 6 }, q.WeightShape.ToArray());
        CollectionAssert.AreEqual(aQ, adapter.ReadSingles(q, AdapterTensorRole.LoraA));
        CollectionAssert.AreEqual(bQ, adapter.ReadSingles(q, AdapterTensorRole.LoraB));
        CollectionAssert.AreEqual(mQ, adapter.ReadSingles(q, AdapterTensorRole.Magnitude));

        var v = adapter.Get(V);
        Assert.AreEqual(3, v.Rank);
        Assert.AreEqual(1.5, v.Alpha);
        Assert.AreEqual(0.5, v.Scaling, 1e-12);

        var e = adapter.Get("model.embed_tokens");
        Assert.AreEqual(AdapterModuleKind.LoraEmbedding, e.Kind);
        Assert.AreEqual(10, e.InFeatures);
        Assert.AreEqual(6, e.OutFeatures);
        Assert.IsTrue(e.WeightIsTransposed);
        CollectionAssert.AreEqual(new long[] { 10, 6 }, e.WeightShape.ToArray());

        var extra = adapter.ExtraTensors.Single();
        Assert.AreEqual(AdapterExtraKind.ModulesToSave, extra.Kind);
        Assert.AreEqual("score.weight", extra.TargetName);
    }

    [TestMethod]
    public void Save_WithBf16_KeepsDtypeAndRoundsOnce()
    {
        var a = Values(2 * 6, 1);
        var tensors = new[]
        {
            PeftAdapter.EncodeTensor($"base_model.model.{Q}.lora_A.weight", [2, 6], a, DType.BF16),
            PeftAdapter.EncodeTensor($"base_model.model.{Q}.lora_B.weight", [5, 2], Values(10, 2), DType.BF16),
        };
        string dir = Path.Combine(NewDir(), "bf16");
        PeftAdapter.Save(dir, new PeftAdapterConfig { R = 2, Alpha = 2 }, tensors);
        using var adapter = PeftAdapter.Load(dir);
        var q = adapter.Get(Q);
        Assert.AreEqual(DType.BF16, q[AdapterTensorRole.LoraA].DType);
        var back = adapter.ReadSingles(q, AdapterTensorRole.LoraA);
        int inexact = 0;
        for (int i = 0; i < a.Length; i++)
        {
            // Once, to nearest-even: exactly the independent reference's value (truncation or a second rounding differ).
            double expected = NearestEven.BF16.Decode(NearestEven.BF16.Encode(a[i]))!.Value;
            Assert.AreEqual(expected, back[i], $"element {i}: {a[i]:R}");
            inexact += expected == a[i] ? 0 : 1;
        }
        Assert.IsGreaterThan(0, inexact, "the values must need rounding, or this test proves nothing");
    }

    [TestMethod]
    public void KeyFor_UsesPeftSuffixes()
    {
        Assert.AreEqual("base_model.model.m.q.lora_A.weight", PeftAdapter.KeyFor("m.q", AdapterModuleKind.Lora, AdapterTensorRole.LoraA));
        Assert.AreEqual("base_model.model.m.q.lora_B.weight", PeftAdapter.KeyFor("m.q", AdapterModuleKind.Lora, AdapterTensorRole.LoraB));
        Assert.AreEqual("base_model.model.m.q.lora_magnitude_vector", PeftAdapter.KeyFor("m.q", AdapterModuleKind.Lora, AdapterTensorRole.Magnitude));
        Assert.AreEqual("base_model.model.e.lora_embedding_A", PeftAdapter.KeyFor("e", AdapterModuleKind.LoraEmbedding, AdapterTensorRole.LoraA));
        Assert.AreEqual("base_model.model.e.lora_embedding_B", PeftAdapter.KeyFor("e", AdapterModuleKind.LoraEmbedding, AdapterTensorRole.LoraB));
        Assert.AreEqual("base_model.model.m.hada_w2_b", PeftAdapter.KeyFor("m", AdapterModuleKind.LoHa, AdapterTensorRole.HadaW2B));
        Assert.AreEqual("base_model.model.m.lokr_w1_a", PeftAdapter.KeyFor("m", AdapterModuleKind.LoKr, AdapterTensorRole.LokrW1A));
    }

    [TestMethod]
    public void Load_LoHa_ParsesFourFactors()
    {
        string dir = WriteRaw("""{"peft_type": "LOHA", "r": 2, "alpha": 3}""",
        [
            F32($"base_model.model.{Q}.hada_w1_a", [5, 2], 1),
            F32($"base_model.model.{Q}.hada_w1_b", [2, 6], 2),
            F32($"base_model.model.{Q}.hada_w2_a", [5, 2], 3),
            F32($"base_model.model.{Q}.hada_w2_b", [2, 6], 4),
        ]);
        using var adapter = PeftAdapter.Load(dir);
        var m = adapter.Get(Q);
        Assert.AreEqual(AdapterModuleKind.LoHa, m.Kind);
        Assert.AreEqual((5, 6), (m.OutFeatures, m.InFeatures));
        Assert.AreEqual(1.5, m.Scaling, 1e-12);
    }

    [TestMethod]
    public void Load_LoKr_WithFactoredW2_ComputesKroneckerShape()
    {
        string dir = WriteRaw("""{"peft_type": "LOKR", "r": 2, "alpha": 1}""",
        [
            F32($"base_model.model.{Q}.lokr_w1", [2, 3], 1),
            F32($"base_model.model.{Q}.lokr_w2_a", [4, 2], 2),
            F32($"base_model.model.{Q}.lokr_w2_b", [2, 5], 3),
        ]);
        using var adapter = PeftAdapter.Load(dir);
        var m = adapter.Get(Q);
        Assert.AreEqual(AdapterModuleKind.LoKr, m.Kind);
        Assert.AreEqual((8, 15), (m.OutFeatures, m.InFeatures));
        Assert.AreEqual(0.5, m.Scaling, 1e-12);
    }

    [TestMethod]
    public void Load_BiasLoraOnly_AndLegacyModulesToSave_AreExtras()
    {
        string dir = WriteRaw("""{"peft_type": "LORA", "r": 2, "bias": "lora_only", "modules_to_save": ["classifier"]}""",
        [
            .. LoraTensors(Q),
            F32($"base_model.model.{Q}.bias", [5], 3),
            F32("base_model.model.classifier.modules_to_save.weight", [2, 6], 4),
        ]);
        using var adapter = PeftAdapter.Load(dir);
        var bias = adapter.ExtraTensors.Single(x => x.Kind == AdapterExtraKind.Bias);
        Assert.AreEqual($"{Q}.bias", bias.TargetName);
        var saved = adapter.ExtraTensors.Single(x => x.Kind == AdapterExtraKind.ModulesToSave);
        Assert.AreEqual("classifier.weight", saved.TargetName);
    }

    [TestMethod]
    public void Load_MissingLoraB_ThrowsNamingKey()
    {
        string dir = WriteRaw(LoraJson, [LoraTensors()[0]]);
        var e = BadInput.Throws(() => PeftAdapter.Load(dir));
        StringAssert.Contains(e.Message, PeftAdapter.WeightsFileName);
        StringAssert.Contains(e.Message, $"'base_model.model.{Q}.lora_B.weight': found missing");
    }

    [TestMethod]
    public void Load_RankMismatch_ThrowsNamingKeyAndRank()
    {
        string dir = WriteRaw(LoraJson.Replace("\"r\": 2", "\"r\": 3", StringComparison.Ordinal), LoraTensors());
        var e = BadInput.Throws(() => PeftAdapter.Load(dir));
        StringAssert.Contains(e.Message, $"'base_model.model.{Q}.lora_A.weight': found 2 rows");
        StringAssert.Contains(e.Message, "expected 3");
    }

    [TestMethod]
    public void Load_AAndBDisagree_Throws()
    {
        string dir = WriteRaw(LoraJson, [LoraTensors()[0], F32($"base_model.model.{Q}.lora_B.weight", [5, 3], 2)]);
        var e = BadInput.Throws(() => PeftAdapter.Load(dir));
        StringAssert.Contains(e.Message, "lora_B.weight': found 3 columns");
    }

    [TestMethod]
    public void Load_UnknownKey_ListsIt()
    {
        string dir = WriteRaw(LoraJson, [.. LoraTensors(), F32("base_model.model.x.lora_C.weight", [2, 2], 3), F32("stray", [1], 4)]);
        var e = BadInput.Throws(() => PeftAdapter.Load(dir));
        StringAssert.Contains(e.Message, "unknown tensor keys");
        StringAssert.Contains(e.Message, "'base_model.model.x.lora_C.weight'");
        StringAssert.Contains(e.Message, "'stray'");
    }

    [TestMethod]
    public void Load_IntegerWeight_ThrowsNamingDtype()
    {
        var a = new TensorSpec($"base_model.model.{Q}.lora_A.weight", DType.I64, [2, 6]);
        string dir = WriteRaw(LoraJson, [(a, new byte[a.ByteLength]), LoraTensors()[1]]);
        var e = BadInput.Throws(() => PeftAdapter.Load(dir));
        StringAssert.Contains(e.Message, "lora_A.weight': found dtype I64, expected a floating-point dtype");
    }

    [TestMethod]
    public void Load_RankAboveMinDims_Throws()
    {
        string dir = WriteRaw(LoraJson.Replace("\"r\": 2", "\"r\": 4", StringComparison.Ordinal), LoraTensors(r: 4, inF: 6, outF: 3));
        var e = BadInput.Throws(() => PeftAdapter.Load(dir));
        StringAssert.Contains(e.Message, "found rank 4 for a [3, 6] update");
    }

    [TestMethod]
    public void Load_DoraMagnitudeWithoutUseDora_Throws()
    {
        string dir = WriteRaw(LoraJson, [.. LoraTensors(), F32($"base_model.model.{Q}.lora_magnitude_vector", [5], 3)]);
        var e = BadInput.Throws(() => PeftAdapter.Load(dir));
        StringAssert.Contains(e.Message, "use_dora is false");
    }

    [TestMethod]
    public void Load_DoraMagnitudeWrongLength_Throws()
    {
        string dir = WriteRaw(LoraJson.Replace("\"bias\"", "\"use_dora\": true, \"bias\"", StringComparison.Ordinal),
            [.. LoraTensors(), F32($"base_model.model.{Q}.lora_magnitude_vector", [6], 3)]);
        var e = BadInput.Throws(() => PeftAdapter.Load(dir));
        StringAssert.Contains(e.Message, "lora_magnitude_vector': found shape [6], expected [5]");
    }

    [TestMethod]
    public void Load_LoHaTuckerCore_IsRejectedClearly()
    {
        string dir = WriteRaw("""{"peft_type": "LOHA", "r": 2, "alpha": 2}""", [F32("base_model.model.conv.hada_t1", [2, 2, 3, 3], 1)]);
        var e = BadInput.Throws(() => PeftAdapter.Load(dir));
        StringAssert.Contains(e.Message, "base_model.model.conv.hada_t1");
        StringAssert.Contains(e.Message, "CP/Tucker");
    }

    [TestMethod]
    public void Load_LoKrMissingFactor_Throws()
    {
        string dir = WriteRaw("""{"peft_type": "LOKR", "r": 2, "alpha": 1}""",
            [F32($"base_model.model.{Q}.lokr_w1", [2, 3], 1), F32($"base_model.model.{Q}.lokr_w2_a", [4, 2], 2)]);
        var e = BadInput.Throws(() => PeftAdapter.Load(dir));
        StringAssert.Contains(e.Message, $"'base_model.model.{Q}.lokr_w2_b': found missing");
    }

    [TestMethod]
    public void Load_PickleOnly_IsRejectedWithAClearMessage()
    {
        string dir = NewDir();
        File.WriteAllText(Path.Combine(dir, PeftAdapterConfig.FileName), LoraJson);
        File.WriteAllBytes(Path.Combine(dir, PeftAdapter.PickleWeightsFileName), Encoding.ASCII.GetBytes("PK"));
        var e = BadInput.Throws(() => PeftAdapter.Load(dir));
        StringAssert.Contains(e.Message, PeftAdapter.PickleWeightsFileName);
        StringAssert.Contains(e.Message, "only adapter_model.safetensors");
    }

    [TestMethod]
    public void Load_BadConfigJson_NamesTheConfigFile()
    {
        string dir = WriteRaw("{\"peft_type\": \"LORA\", ", LoraTensors());
        var e = BadInput.Throws(() => PeftAdapter.Load(dir));
        StringAssert.Contains(e.Message, Path.Combine(dir, PeftAdapterConfig.FileName));
        StringAssert.Contains(e.Message, "not valid JSON");
    }

    [TestMethod]
    public void Load_MissingFolder_IsBadInput()
    {
        BadInput.Throws(() => PeftAdapter.Load(Path.Combine(NewDir(), "nope")));
    }

    [TestMethod]
    public void Save_InvalidTensors_LeavesNoFolder()
    {
        string dir = Path.Combine(NewDir(), "never");
        BadInput.Throws(() => PeftAdapter.Save(dir, new PeftAdapterConfig { R = 3 }, LoraTensors()));
        Assert.IsFalse(Directory.Exists(dir));
        Assert.IsEmpty(Directory.GetFileSystemEntries(Path.GetDirectoryName(dir)!));
    }

    [TestMethod]
    public void Save_Existing_RequiresOverwrite()
    {
        string dir = Path.Combine(NewDir(), "a");
        var config = new PeftAdapterConfig { R = 2, Alpha = 4 };
        PeftAdapter.Save(dir, config, LoraTensors());
        BadInput.Throws(() => PeftAdapter.Save(dir, config, LoraTensors()));
        PeftAdapter.Save(dir, config with { Alpha = 8 }, LoraTensors(), overwrite: true);
        using var adapter = PeftAdapter.Load(dir);
        Assert.AreEqual(8.0, adapter.Config.Alpha);
        Assert.HasCount(1, Directory.GetFileSystemEntries(Path.GetDirectoryName(dir)!));
    }
}
