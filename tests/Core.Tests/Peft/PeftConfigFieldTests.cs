using System.Text.Json.Nodes;
using OnnxLora.Core.Peft;
using static OnnxLora.Core.Tests.Peft.PeftTestFiles;

namespace OnnxLora.Core.Tests.Peft;

/// <summary>Every PEFT config field is honoured or refused naming it; none is silently ignored.</summary>
[TestClass]
public sealed class PeftConfigFieldTests
{
    private const string Q = "model.layers.0.self_attn.q_proj";

    /// <summary>This class's own scratch folder (other classes delete <see cref="PeftTestFiles.Root"/> when they finish).</summary>
    private static readonly string Scratch = Path.Combine(Path.GetTempPath(), "onnxlora-peft-field-tests", Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture));

    [ClassCleanup]
    public static void Cleanup()
    {
        if (Directory.Exists(Scratch))
        {
            Directory.Delete(Scratch, recursive: true);
        }
    }

    private static string Write(string json, IEnumerable<(OnnxLora.Core.Safetensors.TensorSpec Spec, ReadOnlyMemory<byte> Data)> tensors) => WriteRaw(json, tensors, Scratch);

    private static string Lora(string extra) =>
        "{\"peft_type\": \"LORA\", \"task_type\": \"CAUSAL_LM\", \"r\": 2, \"lora_alpha\": 4, \"target_modules\": [\"q_proj\"]" + (extra.Length > 0 ? ", " + extra : "") + "}";

    [TestMethod]
    [DataRow("layer_replication", "[[0, 2], [1, 3]]")]
    [DataRow("alora_invocation_tokens", "[101, 102]")]
    [DataRow("use_qalora", "true")]
    [DataRow("target_parameters", "[\"feed_forward.experts.down_proj\"]")]
    [DataRow("trainable_token_indices", "[5, 6]")]
    [DataRow("arrow_config", "{\"top_k\": 2}")]
    [DataRow("kasa_config", "{\"beta\": 0.1}")]
    [DataRow("use_bdlora", "{\"nblocks\": 2}")]
    public void Parse_FieldThatChangesWhatAMergeMeans_IsRefusedNamingIt(string field, string value)
    {
        var e = BadInput.Throws(() => PeftAdapterConfig.Parse(Lora($"\"{field}\": {value}"), "/a/adapter_config.json"));
        StringAssert.StartsWith(e.Message, $"/a/adapter_config.json: {field}: found ");
        StringAssert.Contains(e.Message, "expected null or unset (");
    }

    [TestMethod]
    [DataRow("layer_replication", "null")]
    [DataRow("alora_invocation_tokens", "null")]
    [DataRow("use_qalora", "false")]
    [DataRow("target_parameters", "[]")]
    [DataRow("trainable_token_indices", "null")]
    [DataRow("arrow_config", "null")]
    public void Parse_RefusableFieldAtItsDefault_IsAccepted(string field, string value)
    {
        var c = PeftAdapterConfig.Parse(Lora($"\"{field}\": {value}"), "c.json");
        Assert.IsEmpty(c.UnknownFieldWarnings("c.json"));
    }

    [TestMethod]
    [DataRow("pissa")]
    [DataRow("pissa_niter_16")]
    [DataRow("olora")]
    [DataRow("corda")]
    [DataRow("lora_ga")]
    [DataRow("loftq")]
    public void Parse_InitThatRewroteTheBase_IsRefusedNamingInitLoraWeights(string init)
    {
        var e = BadInput.Throws(() => PeftAdapterConfig.Parse(Lora($"\"init_lora_weights\": \"{init}\""), "c.json"));
        StringAssert.StartsWith(e.Message, $"c.json: init_lora_weights: found \"{init}\"");
    }

    [TestMethod]
    [DataRow("true")]
    [DataRow("false")]
    [DataRow("\"gaussian\"")]
    [DataRow("\"eva\"")]
    [DataRow("\"orthogonal\"")]
    [DataRow("\"mica\"")]
    public void Parse_InitThatLeavesTheBase_IsAcceptedWithoutWarning(string init)
    {
        var c = PeftAdapterConfig.Parse(Lora($"\"init_lora_weights\": {init}"), "c.json");
        Assert.IsEmpty(c.UnknownFieldWarnings("c.json"));
    }

    [TestMethod]
    [DataRow("\"layers_to_transform\": [0], \"target_modules\": \".*q_proj\"", "layers_to_transform")]
    [DataRow("\"layers_pattern\": \"layers\", \"target_modules\": \".*q_proj\"", "layers_pattern")]
    [DataRow("\"layers_pattern\": \"layers\"", "layers_pattern")]
    [DataRow("\"lora_bias\": true, \"init_lora_weights\": \"gaussian\"", "lora_bias")]
    [DataRow("\"lora_bias\": true, \"use_dora\": true", "lora_bias")]
    public void Parse_CombinationPeftRejects_IsRefusedNamingTheField(string fields, string field)
    {
        string json = "{\"peft_type\": \"LORA\", \"r\": 2, " + fields + (fields.Contains("target_modules", StringComparison.Ordinal) ? "" : ", \"target_modules\": [\"q_proj\"]") + "}";
        var e = BadInput.Throws(() => PeftAdapterConfig.Parse(json, "c.json"));
        StringAssert.StartsWith(e.Message, $"c.json: {field}: found ");
    }

    [TestMethod]
    public void UnknownField_IsKeptOnRoundTrip_AndWarnedWhenSet()
    {
        var c = PeftAdapterConfig.Parse(Lora("\"use_future_trick\": true, \"future_scale\": 0.5, \"future_note\": null, \"future_off\": false, \"future_cfg\": {}"), "/a/adapter_config.json");
        var warnings = c.UnknownFieldWarnings("/a/adapter_config.json");
        Assert.HasCount(2, warnings, string.Join("\n", warnings));
        Assert.IsTrue(warnings.Any(w => w.StartsWith("/a/adapter_config.json: field 'use_future_trick' = true", StringComparison.Ordinal)));
        Assert.IsTrue(warnings.Any(w => w.Contains("'future_scale' = 0.5", StringComparison.Ordinal)));
        var json = JsonNode.Parse(c.ToJson())!.AsObject();
        Assert.IsTrue((bool)json["use_future_trick"]!);
        Assert.AreEqual(0.5, (double)json["future_scale"]!);
        Assert.IsTrue(json.ContainsKey("future_note"));
    }

    [TestMethod]
    public void UnknownInitMethod_IsWarned()
    {
        var c = PeftAdapterConfig.Parse(Lora("\"init_lora_weights\": \"brand_new_init\""), "c.json");
        StringAssert.Contains(c.UnknownFieldWarnings("c.json").Single(), "init_lora_weights \"brand_new_init\"");
    }

    [TestMethod]
    public void NewTypedFields_RoundTrip()
    {
        var c = PeftAdapterConfig.Parse(Lora("\"exclude_modules\": [\"layers.1.self_attn.q_proj\"], \"layers_to_transform\": [0, 1], \"layers_pattern\": \"layers\", \"lora_bias\": true"), "c.json");
        Assert.AreEqual(TargetModulesKind.List, c.ExcludeModules!.Kind);
        CollectionAssert.AreEqual(new[] { "layers" }, c.LayersPattern!.ToArray());
        Assert.IsTrue(c.LoraBias);
        var again = PeftAdapterConfig.Parse(c.ToJson(), "again.json");
        Assert.AreEqual(c.ToJson(), again.ToJson());
        Assert.IsTrue(again.LoraBias);
        Assert.AreEqual("layers.1.self_attn.q_proj", again.ExcludeModules!.Names.Single());
    }

    // ---- which modules PEFT would put the adapter on (check_target_module_exists) ----

    [TestMethod]
    public void WhyNotTargeted_FollowsPeftOrderAndRules()
    {
        var c = PeftAdapterConfig.Parse(Lora("\"target_modules\": [\"q_proj\", \"model.layers.5.self_attn.q_proj\"], \"layers_to_transform\": [0, 2], \"exclude_modules\": [\"layers.2.self_attn.q_proj\"], \"modules_to_save\": [\"lm_head\"]")
            .Replace("\"target_modules\": [\"q_proj\"], ", "", StringComparison.Ordinal), "c.json");
        Assert.IsNull(c.WhyNotTargeted("model.layers.0.self_attn.q_proj"));
        Assert.AreEqual("layers_to_transform", c.WhyNotTargeted("model.layers.1.self_attn.q_proj")!.Value.Field);
        Assert.AreEqual("exclude_modules", c.WhyNotTargeted("model.layers.2.self_attn.q_proj")!.Value.Field);
        Assert.AreEqual("target_modules", c.WhyNotTargeted("model.layers.0.self_attn.k_proj")!.Value.Field);
        Assert.AreEqual("modules_to_save", c.WhyNotTargeted("lm_head")!.Value.Field);
        // An exact name in target_modules skips the layer filter, as in PEFT.
        Assert.IsNull(c.WhyNotTargeted("model.layers.5.self_attn.q_proj"));
        StringAssert.Contains(c.WhyNotTargeted("model.layers.1.self_attn.q_proj")!.Value.Reason, "does not include its layer 1");
    }

    [TestMethod]
    public void WhyNotTargeted_LayersPattern_PicksTheIndexAfterThatName()
    {
        var c = PeftAdapterConfig.Parse(Lora("\"layers_to_transform\": [3], \"layers_pattern\": [\"blocks\"]"), "c.json");
        Assert.IsNull(c.WhyNotTargeted("encoder.0.blocks.3.attn.q_proj"));
        Assert.AreEqual("layers_to_transform", c.WhyNotTargeted("encoder.3.blocks.0.attn.q_proj")!.Value.Field);
        var none = c.WhyNotTargeted("model.layers.3.self_attn.q_proj");
        Assert.AreEqual("layers_pattern", none!.Value.Field);
        // Without a pattern PEFT takes the first number after the first dotted component (lazy match).
        var plain = PeftAdapterConfig.Parse(Lora("\"layers_to_transform\": 1"), "c.json");
        Assert.IsNull(plain.WhyNotTargeted("model.layers.1.mlp.experts.0.q_proj"));
        Assert.IsNotNull(plain.WhyNotTargeted("model.layers.0.mlp.experts.1.q_proj"));
    }

    [TestMethod]
    public void Load_TensorsOfAModuleTheConfigDoesNotSelect_AreRefusedNamingTheField()
    {
        foreach (var (extra, field) in new[]
        {
            ("\"layers_to_transform\": [1]", "layers_to_transform"),
            ("\"layers_to_transform\": [0], \"layers_pattern\": \"blocks\"", "layers_pattern"),
            ("\"exclude_modules\": \".*layers\\\\.0\\\\..*\"", "exclude_modules"),
        })
        {
            string dir = Write(Lora(extra), LoraTensors());
            var e = BadInput.Throws(() => PeftAdapter.Load(dir), extra);
            StringAssert.StartsWith(e.Message, Path.Combine(dir, PeftAdapterConfig.FileName) + $": {field}: found a config under which PEFT would not load module '{Q}'");
        }
        string other = Write(Lora("").Replace("[\"q_proj\"]", "[\"v_proj\"]", StringComparison.Ordinal), LoraTensors());
        var t = BadInput.Throws(() => PeftAdapter.Load(other));
        StringAssert.Contains(t.Message, "target_modules: found a config under which PEFT would not load module");
    }

    [TestMethod]
    public void Load_LayersToTransformSelectingTheModule_Loads()
    {
        using var a = PeftAdapter.Load(Write(Lora("\"layers_to_transform\": [0], \"layers_pattern\": \"layers\""), LoraTensors()));
        Assert.AreEqual(Q, a.Modules.Single().ModulePath);
        Assert.IsEmpty(a.Warnings);
    }

    [TestMethod]
    public void Load_ModulesToSaveOverALoraTarget_KeepsOnlyTheSavedCopy()
    {
        // PEFT never adapts a module it saves in full: the saved copy replaces the weight, the LoRA tensors are ignored.
        const string json = """{"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["q_proj", "v_proj"], "modules_to_save": ["q_proj"]}""";
        string dir = Write(json, [.. LoraTensors(), .. LoraTensors("model.layers.0.self_attn.v_proj"), F32($"base_model.model.{Q}.weight", [5, 6], 9)]);
        using var a = PeftAdapter.Load(dir);
        Assert.AreEqual("model.layers.0.self_attn.v_proj", a.Modules.Single().ModulePath);
        Assert.AreEqual(Q + ".weight", a.ExtraTensors.Single().TargetName);
        StringAssert.Contains(a.Warnings.Single(), $"module '{Q}' has Lora tensors but modules_to_save lists it");
    }

    [TestMethod]
    public void Load_LoraBias_IsAModuleTensorScaledBySWhenMerged()
    {
        string dir = Write(Lora("\"lora_bias\": true"), [.. LoraTensors(), F32($"base_model.model.{Q}.lora_B.bias", [5], 3)]);
        using var a = PeftAdapter.Load(dir);
        var m = a.Modules.Single();
        Assert.IsTrue(m.HasLoraBias);
        var b = a.ReadSingles(m, AdapterTensorRole.LoraBias);
        var bias = new float[] { 1, 2, 3, 4, 5 };
        a.ReadUpdate(m).MergeBiasInto(bias, 0.5);
        for (int i = 0; i < 5; i++)
        {
            Assert.AreEqual((i + 1) + (0.5 * 2.0 * b[i]), bias[i], 1e-6, $"bias {i} += w·s·b with s = 4/2");
        }
        string without = Write(Lora(""), [.. LoraTensors(), F32($"base_model.model.{Q}.lora_B.bias", [5], 3)]);
        var e = BadInput.Throws(() => PeftAdapter.Load(without));
        StringAssert.Contains(e.Message, "lora_bias is false");
        string missing = Write(Lora("\"lora_bias\": true"), LoraTensors());
        StringAssert.Contains(BadInput.Throws(() => PeftAdapter.Load(missing)).Message, "lora_B.bias': found missing");
    }

    [TestMethod]
    public void Load_VeLoRABuffers_AreNotNeededToMerge()
    {
        string dir = Write(Lora("\"velora_config\": {\"num_groups\": 2}"), [.. LoraTensors(), F32($"base_model.model.{Q}.lora_velora_embed", [3], 4)]);
        using var a = PeftAdapter.Load(dir);
        Assert.AreEqual(Q, a.Modules.Single().ModulePath);
        Assert.IsEmpty(a.ExtraTensors);
    }

    [TestMethod]
    public void DocsTable_ListsEveryFieldThisVersionKnows()
    {
        string repo = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(repo, "OnnxLora.sln")))
        {
            repo = Path.GetDirectoryName(repo) ?? throw new AssertFailedException("repository root not found");
        }
        string doc = File.ReadAllText(Path.Combine(repo, "docs", "peft-config-fields.md"));
        var missing = PeftAdapterConfig.KnownFieldNames.Where(f => !doc.Contains($"`{f}`", StringComparison.Ordinal)).ToList();
        Assert.IsEmpty(missing, "fields missing from docs/peft-config-fields.md: " + string.Join(", ", missing));
    }
}
