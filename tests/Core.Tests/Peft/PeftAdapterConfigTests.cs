using System.Text.Json.Nodes;
using OnnxLora.Core.Peft;

namespace OnnxLora.Core.Tests.Peft;

[TestClass]
public sealed class PeftAdapterConfigTests
{
    private const string Full = """
        {
          "alpha_pattern": {"v_proj": 32},
          "auto_mapping": null,
          "base_model_name_or_path": "meta-llama/Llama-3.2-1B",
          "bias": "lora_only",
          "fan_in_fan_out": false,
          "inference_mode": true,
          "init_lora_weights": "gaussian",
          "layers_to_transform": [0, 1],
          "loftq_config": {},
          "lora_alpha": 16,
          "lora_dropout": 0.05,
          "megatron_core": "megatron.core",
          "modules_to_save": ["lm_head"],
          "peft_type": "LORA",
          "r": 8,
          "rank_pattern": {"q_proj": 4, "layers.1.self_attn.v_proj": 2},
          "revision": null,
          "target_modules": ["q_proj", "v_proj"],
          "task_type": "CAUSAL_LM",
          "use_dora": false,
          "use_rslora": true
        }
        """;

    [TestMethod]
    public void Parse_FullLoraConfig_ReadsEveryField()
    {
        var c = PeftAdapterConfig.Parse(Full, "cfg.json");
        Assert.AreEqual(PeftType.Lora, c.PeftType);
        Assert.AreEqual("CAUSAL_LM", c.TaskType);
        Assert.AreEqual("meta-llama/Llama-3.2-1B", c.BaseModelNameOrPath);
        Assert.AreEqual(8, c.R);
        Assert.AreEqual(16.0, c.Alpha);
        Assert.AreEqual(0.05, c.LoraDropout);
        Assert.AreEqual(PeftBias.LoraOnly, c.Bias);
        Assert.IsTrue(c.UseRsLora);
        Assert.IsFalse(c.UseDora);
        Assert.AreEqual("gaussian", c.InitWeights);
        CollectionAssert.AreEqual(new[] { 0, 1 }, c.LayersToTransform!.ToArray());
        CollectionAssert.AreEqual(new[] { "lm_head" }, c.ModulesToSave!.ToArray());
        Assert.AreEqual(TargetModulesKind.List, c.TargetModules!.Kind);
        CollectionAssert.AreEqual(new[] { "q_proj", "v_proj" }, c.TargetModules.Names.ToArray());
        Assert.IsTrue(c.Extras.ContainsKey("megatron_core"));
        Assert.IsTrue(c.Extras.ContainsKey("revision"));
        Assert.IsTrue(c.Extras.ContainsKey("loftq_config"));
    }

    [TestMethod]
    public void ToJson_RoundTrip_KeepsKnownAndUnknownFields()
    {
        var c = PeftAdapterConfig.Parse(Full, "cfg.json");
        string json = c.ToJson();
        var again = PeftAdapterConfig.Parse(json, "again.json");
        Assert.AreEqual(json, again.ToJson());
        var node = JsonNode.Parse(json)!.AsObject();
        Assert.AreEqual("megatron.core", (string?)node["megatron_core"]);
        Assert.IsTrue(node.ContainsKey("auto_mapping") && node["auto_mapping"] is null);
        Assert.AreEqual(16, (int)node["lora_alpha"]!);
        Assert.AreEqual("lora_only", (string?)node["bias"]);
        Assert.AreEqual(4, (int)node["rank_pattern"]!["q_proj"]!);
        // PEFT writes keys sorted.
        var keys = node.Select(p => p.Key).ToList();
        CollectionAssert.AreEqual(keys.OrderBy(k => k, StringComparer.Ordinal).ToList(), keys);
    }

    [TestMethod]
    public void ToJson_Lora_WritesEveryFieldPeftReads()
    {
        var node = JsonNode.Parse(new PeftAdapterConfig { TaskType = "SEQ_CLS", BaseModelNameOrPath = "bert-base-uncased" }.ToJson())!.AsObject();
        foreach (string field in new[]
        {
            "peft_type", "task_type", "r", "lora_alpha", "target_modules", "lora_dropout", "bias", "fan_in_fan_out", "use_rslora",
            "use_dora", "modules_to_save", "rank_pattern", "alpha_pattern", "init_lora_weights", "base_model_name_or_path", "layers_to_transform",
        })
        {
            Assert.IsTrue(node.ContainsKey(field), $"field '{field}' is written");
        }
        Assert.AreEqual("LORA", (string?)node["peft_type"]);
        Assert.IsTrue((bool)node["init_lora_weights"]!);
        Assert.IsFalse(node.ContainsKey("alpha"));
    }

    [TestMethod]
    public void RankFor_FollowsPeftGetPatternKey()
    {
        var c = PeftAdapterConfig.Parse(Full, "cfg.json");
        Assert.AreEqual(4, c.RankFor("model.layers.0.self_attn.q_proj"));
        Assert.AreEqual(4, c.RankFor("q_proj"));
        Assert.AreEqual(2, c.RankFor("model.layers.1.self_attn.v_proj"));
        // "layers.1..." must start at a dot boundary and end at the end of the path.
        Assert.AreEqual(8, c.RankFor("model.layers.11.self_attn.v_proj"));
        Assert.AreEqual(8, c.RankFor("model.layers.0.self_attn.xq_proj"));
        Assert.AreEqual(8, c.RankFor("model.layers.0.self_attn.q_proj_extra"));
    }

    [TestMethod]
    public void RankFor_FirstMatchingKeyWins()
    {
        var c = new PeftAdapterConfig
        {
            R = 8,
            RankPattern = new OrderedDictionary<string, int> { ["layers.*.q_proj"] = 3, ["q_proj"] = 5 },
        };
        Assert.AreEqual(3, c.RankFor("model.layers.7.q_proj"));
        var swapped = c with { RankPattern = new OrderedDictionary<string, int> { ["q_proj"] = 5, ["layers.*.q_proj"] = 3 } };
        Assert.AreEqual(5, swapped.RankFor("model.layers.7.q_proj"));
    }

    [TestMethod]
    public void ScalingFor_WithRsLora_ScalesByAlphaOverSqrtRank()
    {
        var c = PeftAdapterConfig.Parse(Full, "cfg.json");
        Assert.AreEqual(16.0 / Math.Sqrt(4), c.ScalingFor("model.layers.0.self_attn.q_proj"), 1e-12);
        Assert.AreEqual(32.0 / Math.Sqrt(8), c.ScalingFor("model.layers.0.self_attn.v_proj"), 1e-12);
        var plain = c with { UseRsLora = false };
        Assert.AreEqual(16.0 / 4, plain.ScalingFor("model.layers.0.self_attn.q_proj"), 1e-12);
        Assert.AreEqual(32.0 / 2, plain.ScalingFor("model.layers.1.self_attn.v_proj"), 1e-12);
    }

    [TestMethod]
    public void Parse_LoKrConfig_UsesAlphaAndDecomposeFields()
    {
        var c = PeftAdapterConfig.Parse("""
            {"peft_type": "LOKR", "r": 4, "alpha": 2, "decompose_both": true, "decompose_factor": 8,
             "rank_dropout": 0.1, "module_dropout": 0.0, "init_weights": true, "target_modules": "model\\..*\\.(q|v)_proj"}
            """, "lokr.json");
        Assert.AreEqual(PeftType.LoKr, c.PeftType);
        Assert.AreEqual(2.0, c.Alpha);
        Assert.IsTrue(c.DecomposeBoth);
        Assert.AreEqual(8, c.DecomposeFactor);
        Assert.AreEqual(0.5, c.ScalingFor("anything"), 1e-12);
        Assert.AreEqual(TargetModulesKind.Regex, c.TargetModules!.Kind);
        Assert.IsTrue(c.TargetModules.Matches("model.layers.0.q_proj"));
        Assert.IsFalse(c.TargetModules.Matches("model.layers.0.k_proj"));
        var json = JsonNode.Parse(c.ToJson())!.AsObject();
        Assert.AreEqual(2, (int)json["alpha"]!);
        Assert.IsFalse(json.ContainsKey("lora_alpha"));
        Assert.IsTrue((bool)json["decompose_both"]!);
    }

    [TestMethod]
    public void TargetModules_AllLinear_IsItsOwnKind()
    {
        var c = PeftAdapterConfig.Parse("""{"peft_type": "LORA", "target_modules": "all-linear"}""", "c.json");
        Assert.AreEqual(TargetModulesKind.AllLinear, c.TargetModules!.Kind);
        Assert.IsTrue(c.ToJson().Contains("\"target_modules\": \"all-linear\"", StringComparison.Ordinal));
    }

    [TestMethod]
    public void TargetModules_List_MatchesWholeNameOrDottedSuffix()
    {
        var t = TargetModules.FromList(["q_proj", "layers.0.v_proj"]);
        Assert.IsTrue(t.Matches("q_proj"));
        Assert.IsTrue(t.Matches("model.layers.3.self_attn.q_proj"));
        Assert.IsTrue(t.Matches("model.layers.0.v_proj"));
        Assert.IsFalse(t.Matches("model.layers.10.v_proj"));
        Assert.IsFalse(t.Matches("model.layers.3.self_attn.xq_proj"));
    }

    [TestMethod]
    [DataRow("{\"peft_type\": \"LORA\", \"r\": 8, \"bias\": \"none\", \"bias\": \"all\"}", "not valid JSON")]
    [DataRow("{\"peft_type\": \"LORA\", \"r\": 8,", "not valid JSON")]
    [DataRow("{\"peft_type\": \"LORA\", \"r\": -2}", "r: found -2, expected a positive integer")]
    [DataRow("{\"peft_type\": \"LORA\", \"r\": 0}", "r: found 0")]
    [DataRow("{\"peft_type\": \"LORA\", \"r\": \"8\"}", "r: found the string \"8\", expected a number")]
    [DataRow("{\"peft_type\": \"LORA\", \"r\": 2.5}", "r: found 2.5, expected an integer")]
    [DataRow("{\"peft_type\": \"LORA\", \"lora_alpha\": NaN}", "lora_alpha: found NaN")]
    [DataRow("{\"peft_type\": \"LORA\", \"lora_alpha\": Infinity}", "lora_alpha: found Infinity")]
    [DataRow("{\"peft_type\": \"LORA\", \"lora_alpha\": -1}", "lora_alpha: found -1, expected a finite number ≥ 0")]
    [DataRow("{\"peft_type\": \"LOHA\", \"alpha\": -3}", "alpha: found -3")]
    [DataRow("{\"peft_type\": \"IA3\"}", "peft_type: found \"IA3\"")]
    [DataRow("{\"r\": 4}", "peft_type: found nothing")]
    [DataRow("{\"peft_type\": \"LORA\", \"bias\": \"some\"}", "bias: found \"some\"")]
    [DataRow("{\"peft_type\": \"LORA\", \"use_rslora\": \"yes\"}", "use_rslora: found the string \"yes\", expected true or false")]
    [DataRow("{\"peft_type\": \"LORA\", \"target_modules\": \"(q_proj\"}", "target_modules: found the regex \"(q_proj\" that does not compile")]
    [DataRow("{\"peft_type\": \"LORA\", \"target_modules\": 5}", "target_modules: found the number 5")]
    [DataRow("{\"peft_type\": \"LORA\", \"rank_pattern\": {\"q[\": 4}}", "rank_pattern key 'q[': found a regex that does not compile")]
    [DataRow("{\"peft_type\": \"LORA\", \"rank_pattern\": {\"q_proj\": 0}}", "rank_pattern['q_proj']: found 0")]
    [DataRow("{\"peft_type\": \"LORA\", \"alpha_pattern\": {\"q_proj\": NaN}}", "alpha_pattern['q_proj']: found NaN")]
    [DataRow("{\"peft_type\": \"LORA\", \"lora_dropout\": 1.5}", "lora_dropout: found 1.5")]
    [DataRow("[1, 2]", "root: found Array, expected a JSON object")]
    public void Parse_Malformed_ThrowsNamingFileAndField(string json, string expectedFragment)
    {
        var e = BadInput.Throws(() => PeftAdapterConfig.Parse(json, "/tmp/x/adapter_config.json"));
        StringAssert.StartsWith(e.Message, "/tmp/x/adapter_config.json: ");
        StringAssert.Contains(e.Message, expectedFragment);
    }

    [TestMethod]
    public void Parse_NaNInsideAString_IsAString()
    {
        var c = PeftAdapterConfig.Parse("""{"peft_type": "LORA", "base_model_name_or_path": "NaN-Infinity model"}""", "c.json");
        Assert.AreEqual("NaN-Infinity model", c.BaseModelNameOrPath);
    }
}
