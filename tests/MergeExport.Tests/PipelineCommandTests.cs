using System.Text.Json;
using OnnxLora.Core;
using OnnxLora.Core.Peft;
using OnnxLora.Core.Safetensors;

namespace OnnxLora.MergeExport.Tests;

/// <summary>sample, train, merge, export and run on the committed sample model, and their bad-input paths.</summary>
[TestClass]
public sealed class PipelineCommandTests
{
    private static JsonElement Json(string text)
    {
        using var doc = JsonDocument.Parse(text);
        return doc.RootElement.Clone();
    }

    [TestMethod]
    public void Sample_WritesTheEmbeddedFiles_AndNeverClobbers()
    {
        using var dir = new TempDir();
        string outDir = dir.File("s");

        var (code, _, err) = CliHarness.Run("sample", "--out", outDir);

        Assert.AreEqual(0, code, err);
        foreach (string f in new[] { "config.json", "model.safetensors", "tokenizer.json", "task.jsonl" })
        {
            CollectionAssert.AreEqual(File.ReadAllBytes(Path.Combine(SampleModels.Model, f)), File.ReadAllBytes(Path.Combine(outDir, f)), f);
        }
        var (again, _, err2) = CliHarness.Run("sample", "--out", outDir);
        Assert.AreEqual(2, again);
        StringAssert.Contains(err2, "--force");
    }

    [TestMethod]
    public void Train_FewSteps_WritesPeftAdapterAndReportsLoss()
    {
        using var dir = new TempDir();
        string adapter = dir.File("a");

        var (code, json, err) = CliHarness.Run("train", "--model", SampleModels.Model, "--data", Path.Combine(SampleModels.Model, "task.jsonl"),
            "--out", adapter, "--steps", "3", "--batch", "4", "--rank", "4", "--alpha", "8", "--json");

        Assert.AreEqual(0, code, err);
        var result = Json(json);
        Assert.AreEqual(3, result.GetProperty("details").GetProperty("steps").GetInt32());
        Assert.IsTrue(double.IsFinite(result.GetProperty("details").GetProperty("finalLoss").GetDouble()));
        using var loaded = PeftAdapter.Load(adapter);
        Assert.AreEqual(4, loaded.Config.R);
        Assert.AreEqual(8.0, loaded.Config.Alpha);
        Assert.IsTrue(loaded.Modules.All(m => m.Rank == 4));
    }

    [TestMethod]
    [DoNotParallelize]
    public void Train_MemoryOptions_CheckpointingKeepsTheAdapterBytes_Bf16BaseSavesAnFp32Adapter()
    {
        using var dir = new TempDir();
        string[] common = ["train", "--model", SampleModels.Model, "--data", Path.Combine(SampleModels.Model, "task.jsonl"),
            "--steps", "3", "--batch", "4", "--rank", "4", "--dropout", "0.1", "--threads", "1"];

        var plain = CliHarness.Run([.. common, "--out", dir.File("plain")]);
        var checkpointed = CliHarness.Run([.. common, "--out", dir.File("ckpt"), "--gradient-checkpointing"]);
        var bf16 = CliHarness.Run([.. common, "--out", dir.File("bf16"), "--base-dtype", "bf16"]);
        var firstLayer = CliHarness.Run([.. common, "--out", dir.File("ckpt1"), "--gradient-checkpointing-layers", "1"]);
        var zeroLayers = CliHarness.Run([.. common, "--out", dir.File("ckpt0"), "--gradient-checkpointing-layers", "0"]);
        var selective = CliHarness.Run([.. common, "--out", dir.File("sel"), "--gradient-checkpointing-granularity", "selective"]);
        var unknownGranularity = CliHarness.Run([.. common, "--out", dir.File("bad"), "--gradient-checkpointing-granularity", "attention"]);

        Assert.AreEqual(0, plain.ExitCode, plain.Err);
        Assert.AreEqual(0, checkpointed.ExitCode, checkpointed.Err);
        Assert.AreEqual(0, bf16.ExitCode, bf16.Err);
        Assert.AreEqual(0, firstLayer.ExitCode, firstLayer.Err);
        Assert.AreEqual(2, zeroLayers.ExitCode, zeroLayers.Err);
        StringAssert.Contains(zeroLayers.Err, "--gradient-checkpointing-layers");
        Assert.AreEqual(0, selective.ExitCode, selective.Err);
        Assert.AreEqual(2, unknownGranularity.ExitCode, unknownGranularity.Err);
        StringAssert.Contains(unknownGranularity.Err, "--gradient-checkpointing-granularity");
        CollectionAssert.AreEqual(File.ReadAllBytes(Path.Combine(dir.File("plain"), PeftAdapter.WeightsFileName)),
            File.ReadAllBytes(Path.Combine(dir.File("sel"), PeftAdapter.WeightsFileName)));
        CollectionAssert.AreEqual(File.ReadAllBytes(Path.Combine(dir.File("plain"), PeftAdapter.WeightsFileName)),
            File.ReadAllBytes(Path.Combine(dir.File("ckpt"), PeftAdapter.WeightsFileName)));
        CollectionAssert.AreEqual(File.ReadAllBytes(Path.Combine(dir.File("plain"), PeftAdapter.WeightsFileName)),
            File.ReadAllBytes(Path.Combine(dir.File("ckpt1"), PeftAdapter.WeightsFileName)));
        using var adapter = PeftAdapter.Load(dir.File("bf16"));
        Assert.IsTrue(adapter.Weights.Tensors.All(t => t.DType == DType.F32));
    }

    [TestMethod]
    public void Merge_Checkpoint_ChangesOnlyAdaptedTensors()
    {
        using var dir = new TempDir();
        string outDir = dir.File("merged");

        var (code, json, err) = CliHarness.Run("merge", "--model", SampleModels.Model, "--adapter", SampleModels.Adapter, "--out", outDir, "--json");

        Assert.AreEqual(0, code, err);
        Assert.AreEqual(outDir, Json(json).GetProperty("outputs").GetProperty("checkpoint").GetString());
        using var before = SafetensorsFile.Open(Path.Combine(SampleModels.Model, "model.safetensors"));
        using var after = SafetensorsFile.Open(Path.Combine(outDir, "model.safetensors"));
        using var adapter = PeftAdapter.Load(SampleModels.Adapter);
        var adapted = adapter.Modules.Select(m => m.ModulePath + ".weight").ToHashSet();
        foreach (var t in before.Tensors)
        {
            bool same = before.GetBytes(t).SequenceEqual(after.GetBytes(after.Get(t.Name)));
            Assert.AreEqual(!adapted.Contains(t.Name), same, t.Name);
        }
    }

    [TestMethod]
    public void Merge_WithoutModel_CombinesAdaptersIntoANewAdapter()
    {
        using var dir = new TempDir();
        string outDir = dir.File("combined");

        var (code, _, err) = CliHarness.Run("merge", "--adapter", SampleModels.Adapter + "=0.5", "--adapter", SampleModels.Adapter + "=0.25", "--combine", "cat", "--out", outDir);

        Assert.AreEqual(0, code, err);
        using var combined = PeftAdapter.Load(outDir);
        Assert.IsTrue(combined.Modules.All(m => m.Rank == 16), "cat of two rank-8 adapters has rank 16");
    }

    [TestMethod]
    public void Merge_PeftCombinationNames_AreAcceptedWithPeftsRules()
    {
        using var dir = new TempDir();
        // Two adapters of one rank: a factor-space and a ΔW-space PEFT combination.
        foreach (string name in new[] { "ties", "dare_linear_svd" })
        {
            string outDir = dir.File(name);
            var (code, _, err) = CliHarness.Run("merge", "--adapter", SampleModels.Adapter + "=0.5", "--adapter", SampleModels.Adapter + "=0.25",
                "--combine", name, "--density", "0.5", "--out", outDir);
            Assert.AreEqual(0, code, err);
            using var combined = PeftAdapter.Load(outDir);
            Assert.IsTrue(combined.Modules.All(m => m.Rank == 8), $"{name} keeps the rank");
        }
        // One adapter: PEFT's fallback to linear, said on stderr.
        var (one, _, warning) = CliHarness.Run("merge", "--adapter", SampleModels.Adapter, "--combine", "ties", "--density", "0.5", "--out", dir.File("one"));
        Assert.AreEqual(0, one, warning);
        StringAssert.Contains(warning, "warning: one adapter: combination ties becomes linear");
    }

    [TestMethod]
    public void Export_ThreeModes_WriteModelsWithTheirInterfaces()
    {
        using var dir = new TempDir();
        foreach (string mode in new[] { "base", "merged", "unmerged" })
        {
            string path = dir.File(mode + ".onnx");
            string[] args = mode == "base"
                ? ["export", "--model", SampleModels.Model, "--mode", mode, "--out", path, "--json"]
                : ["export", "--model", SampleModels.Model, "--adapter", SampleModels.Adapter, "--mode", mode, "--out", path, "--json"];
            var (code, json, err) = CliHarness.Run(args);
            Assert.AreEqual(0, code, err);
            Assert.AreEqual(mode == "base" ? 0 : 8, Json(json).GetProperty("details").GetProperty("loraLayers").GetInt32(), mode);
            var (icode, info, _) = CliHarness.Run("inspect", path, "--json");
            Assert.AreEqual(0, icode);
            var inspected = Json(info);
            CollectionAssert.AreEquivalent(new[] { "input_ids", "attention_mask" },
                inspected.GetProperty("inputs").EnumerateArray().Select(i => i.GetProperty("name").GetString()).ToArray());
            Assert.AreEqual("logits", inspected.GetProperty("outputs")[0].GetProperty("name").GetString());
        }
    }

    [TestMethod]
    public void Run_OnTheEmbeddedSample_TrainsMergesExportsValidatesAndReports()
    {
        using var dir = new TempDir();
        string outDir = dir.File("run");

        var (code, json, err) = CliHarness.Run("run", "--out", outDir, "--train-steps", "3", "--runs", "3", "--warmup", "1", "--seq", "16", "--device", "cpu", "--json");

        Assert.AreEqual(0, code, err);
        var result = Json(json);
        Assert.AreEqual("passed", result.GetProperty("status").GetString());
        foreach (string key in new[] { "sample", "adapter", "mergedCheckpoint", "base", "merged", "unmerged", "adapters", "onnxAdapter", "reportJson", "reportMarkdown", "reportHtml" })
        {
            string path = result.GetProperty("outputs").GetProperty(key).GetString()!;
            Assert.IsTrue(File.Exists(path) || Directory.Exists(path), $"{key}: {path}");
        }
        using var report = JsonDocument.Parse(File.ReadAllText(result.GetProperty("outputs").GetProperty("reportJson").GetString()!));
        var comparisons = report.RootElement.GetProperty("comparisons").EnumerateArray().ToList();
        Assert.IsTrue(comparisons.Count >= 4, "merged vs unmerged, base + active adapter, base and eager");
        // Base + the trained adapter active (ONNX Runtime's LoRA adapters) is gated against the merged model, and timed.
        var adapter = comparisons.Single(c => c.GetProperty("reference").GetString() == "adapter");
        Assert.IsTrue(adapter.GetProperty("gated").GetBoolean());
        Assert.IsLessThanOrEqualTo(1e-4, adapter.GetProperty("outputs")[0].GetProperty("maxAbsError").GetDouble());
        var timed = report.RootElement.GetProperty("latency").GetProperty("models").EnumerateArray().Select(m => m.GetProperty("role").GetString()).ToList();
        CollectionAssert.IsSubsetOf(new[] { "base", "merged", "adapter" }, timed);
        Assert.AreEqual(JsonValueKind.Null, report.RootElement.GetProperty("decode").ValueKind, "merged.onnx has no cache");

        // The generation model that ships (the GenAI folder's with-past graph) is the one validated with decoding.
        using var generation = JsonDocument.Parse(File.ReadAllText(result.GetProperty("outputs").GetProperty("generationReportJson").GetString()!));
        var root = generation.RootElement;
        Assert.AreEqual("pass", root.GetProperty("status").GetString());
        Assert.AreEqual(Path.Combine(result.GetProperty("outputs").GetProperty("genaiMerged").GetString()!, "model.onnx"),
            root.GetProperty("models")[0].GetProperty("path").GetString());
        CollectionAssert.AreEqual(new[] { "merged", "unmerged", "base" }, root.GetProperty("models").EnumerateArray().Select(m => m.GetProperty("role").GetString()).ToArray());
        var decode = root.GetProperty("decode");
        Assert.AreEqual(16, decode.GetProperty("newTokens").GetInt32());
        var vsUnmerged = decode.GetProperty("comparisons").EnumerateArray().Single(c => c.GetProperty("reference").GetString() == "unmerged");
        Assert.AreEqual(16L, vsUnmerged.GetProperty("matchingTokens").GetInt64(), "merged and unmerged generate the same greedy tokens");
        foreach (var m in decode.GetProperty("models").EnumerateArray())
        {
            var perToken = m.GetProperty("perToken");
            Assert.AreEqual(decode.GetProperty("rounds").GetInt32() * 15, perToken.GetProperty("count").GetInt32());
            Assert.IsTrue(perToken.GetProperty("p50Ms").GetDouble() <= perToken.GetProperty("p99Ms").GetDouble());
        }
        Assert.IsTrue(root.GetProperty("comparisons")[0].GetProperty("outputs").EnumerateArray().Any(o => o.GetProperty("name").GetString() == "present.0.key"),
            "the prefill comparison covers the cache");
    }

    [TestMethod]
    public void Run_IntoNonEmptyFolderWithoutForce_ExitsTwoAndTouchesNothing()
    {
        using var dir = new TempDir();
        string outDir = dir.File("run");
        Directory.CreateDirectory(outDir);
        File.WriteAllText(Path.Combine(outDir, "keep.txt"), "x");

        var (code, _, err) = CliHarness.Run("run", "--out", outDir);

        Assert.AreEqual(2, code);
        StringAssert.Contains(err, "--force");
        CollectionAssert.AreEqual(new[] { "keep.txt" }, Directory.GetFileSystemEntries(outDir).Select(Path.GetFileName).ToArray());
    }

    [TestMethod]
    public void Run_Cancelled_Exits130AndLeavesNoPartialOutputs()
    {
        using var dir = new TempDir();
        string outDir = dir.File("run");
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        var stdout = new StringWriter();
        var stderr = new StringWriter();

        int code = Cli.Run(["run", "--out", outDir, "--model", SampleModels.Model, "--adapter", SampleModels.Adapter], stdout, stderr, cts.Token);

        Assert.AreEqual(130, code, stderr.ToString());
        var leftovers = Directory.Exists(outDir) ? Directory.GetFileSystemEntries(outDir, "*", SearchOption.AllDirectories) : [];
        Assert.IsFalse(leftovers.Any(p => !Path.GetFileName(p).StartsWith('.')), string.Join(", ", leftovers));
    }
}

/// <summary>Bad input to the pipeline commands: exit code 2, one line naming the problem, no outputs.</summary>
[TestClass]
public sealed class PipelineBadInputTests
{
    private static void AssertBadInput(TempDir dir, string outputName, string[] args, params string[] messageParts)
    {
        var (code, stdout, err) = CliHarness.Run(args);
        Assert.AreEqual(2, code, err);
        Assert.AreEqual(1, err.Trim().Split('\n').Length, $"one line expected: {err}");
        foreach (string part in messageParts)
        {
            StringAssert.Contains(err, part);
        }
        Assert.IsFalse(File.Exists(dir.File(outputName)) || Directory.Exists(dir.File(outputName)), $"{outputName} must not exist");
        _ = stdout;
    }

    /// <summary>An adapter folder written by hand: config + tensors with the given shapes.</summary>
    private static string HandAdapter(TempDir dir, string name, string configJson, params (string Key, long[] Shape)[] tensors)
    {
        string path = dir.File(name);
        Directory.CreateDirectory(path);
        File.WriteAllText(Path.Combine(path, "adapter_config.json"), configJson);
        SafetensorsWriter.Save(Path.Combine(path, "adapter_model.safetensors"),
            tensors.Select(t => (new TensorSpec(t.Key, DType.F32, t.Shape), (ReadOnlyMemory<byte>)new byte[new TensorSpec(t.Key, DType.F32, t.Shape).ByteLength])));
        return path;
    }

    private const string LoraConfig = """{"peft_type":"LORA","r":4,"lora_alpha":8,"target_modules":["q_proj"]}""";

    [TestMethod]
    public void Train_Bf16BaseWithDora() => AssertBadInput(new TempDir(), "o",
        ["train", "--model", SampleModels.Model, "--data", Path.Combine(SampleModels.Model, "task.jsonl"), "--out", "o", "--steps", "1", "--dora", "--base-dtype", "bf16"],
        "BaseDType", "DoRA");

    [TestMethod]
    public void Merge_MissingModelFolder() => AssertBadInput(new TempDir(), "o",
        ["merge", "--model", "/nonexistent/ckpt", "--adapter", SampleModels.Adapter, "--out", Path.Combine(Path.GetTempPath(), Guid.NewGuid().ToString("N"))], "/nonexistent/ckpt");

    [TestMethod]
    public void Merge_ModelIsAFileOfTheWrongKind()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("model.txt"), "not a model");
        AssertBadInput(dir, "o", ["merge", "--model", dir.File("model.txt"), "--adapter", SampleModels.Adapter, "--out", dir.File("o")], "model.txt");
    }

    [TestMethod]
    public void Merge_AdapterForAnotherModel_NamesTheUnmappedModule()
    {
        using var dir = new TempDir();
        string adapter = HandAdapter(dir, "bert-adapter", """{"peft_type":"LORA","r":4,"lora_alpha":8,"target_modules":["query"]}""",
            ("base_model.model.encoder.layer.0.attention.self.query.lora_A.weight", [4, 128]),
            ("base_model.model.encoder.layer.0.attention.self.query.lora_B.weight", [128, 4]));
        AssertBadInput(dir, "o", ["merge", "--model", SampleModels.Model, "--adapter", adapter, "--out", dir.File("o")], "encoder.layer.0.attention.self.query");
    }

    [TestMethod]
    public void Merge_RankMismatchBetweenConfigAndTensors()
    {
        using var dir = new TempDir();
        string adapter = HandAdapter(dir, "a", LoraConfig,
            ("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", [6, 128]),
            ("base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", [128, 6]));
        AssertBadInput(dir, "o", ["merge", "--model", SampleModels.Model, "--adapter", adapter, "--out", dir.File("o")], "lora_A", "adapter_model.safetensors");
    }

    [TestMethod]
    public void Merge_AdapterShapeNotMatchingModel()
    {
        using var dir = new TempDir();
        string adapter = HandAdapter(dir, "a", LoraConfig,
            ("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", [4, 96]),
            ("base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", [96, 4]));
        AssertBadInput(dir, "o", ["merge", "--model", SampleModels.Model, "--adapter", adapter, "--out", dir.File("o")], "model.layers.0.self_attn.q_proj");
    }

    [TestMethod]
    [DataRow("unmerged")]
    [DataRow("merged")]
    public void Export_TargetNotFoundInModel(string mode)
    {
        using var dir = new TempDir();
        string adapter = HandAdapter(dir, "a", """{"peft_type":"LORA","r":4,"lora_alpha":8,"target_modules":["no_such_proj"]}""",
            ("base_model.model.model.layers.0.self_attn.no_such_proj.lora_A.weight", [4, 128]),
            ("base_model.model.model.layers.0.self_attn.no_such_proj.lora_B.weight", [128, 4]));
        AssertBadInput(dir, "m.onnx", ["export", "--model", SampleModels.Model, "--adapter", adapter, "--mode", mode, "--out", dir.File("m.onnx")], "no_such_proj");
    }

    [TestMethod]
    [DataRow("base")]
    [DataRow("merged")]
    public void Export_CheckpointNotMatchingItsConfig_ListsTheProblemAndWritesNothing(string mode)
    {
        using var dir = new TempDir();
        string model = dir.File("model");
        Directory.CreateDirectory(model);
        File.Copy(Path.Combine(SampleModels.Model, "model.safetensors"), Path.Combine(model, "model.safetensors"));
        var config = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(SampleModels.Model, "config.json")))!;
        config["num_hidden_layers"] = 3;
        File.WriteAllText(Path.Combine(model, "config.json"), config.ToJsonString());
        string[] adapter = mode == "base" ? [] : ["--adapter", SampleModels.Adapter];

        AssertBadInput(dir, "m.onnx", ["export", "--model", model, .. adapter, "--mode", mode, "--out", dir.File("m.onnx")], "unexpected 'model.layers.3.");
        Assert.IsFalse(File.Exists(dir.File("m.onnx.data")), "no data file");
    }

    [TestMethod]
    public void Merge_NaNAlpha_IsRejected()
    {
        using var dir = new TempDir();
        string adapter = HandAdapter(dir, "a", """{"peft_type":"LORA","r":4,"lora_alpha":NaN,"target_modules":["q_proj"]}""",
            ("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", [4, 128]),
            ("base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", [128, 4]));
        AssertBadInput(dir, "o", ["merge", "--model", SampleModels.Model, "--adapter", adapter, "--out", dir.File("o")], "adapter_config.json");
    }

    [TestMethod]
    public void Export_UnwritableOutput()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("file"), "a file, not a folder");
        AssertBadInput(dir, "file/m.onnx", ["export", "--model", SampleModels.Model, "--mode", "base", "--out", dir.File("file/m.onnx")], "file");
    }

    [TestMethod]
    public void Export_ExistingOutputWithoutForce_IsKept()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("m.onnx"), "previous");
        var (code, _, err) = CliHarness.Run("export", "--model", SampleModels.Model, "--mode", "base", "--out", dir.File("m.onnx"));
        Assert.AreEqual(2, code);
        StringAssert.Contains(err, "--force");
        Assert.AreEqual("previous", File.ReadAllText(dir.File("m.onnx")));
    }

    [TestMethod]
    [DataRow("--opset", "16")]
    [DataRow("--mode", "half")]
    [DataRow("--dtype", "int8")]
    [DataRow("--external-data", "sometimes")]
    public void Export_InvalidOptionValue(string option, string value)
    {
        using var dir = new TempDir();
        string[] mode = option == "--mode" ? [] : ["--mode", "base"];
        AssertBadInput(dir, "m.onnx", ["export", "--model", SampleModels.Model, .. mode, option, value, "--out", dir.File("m.onnx")], option);
    }

    [TestMethod]
    public void Export_UnmergedWithoutAdapter() =>
        AssertBadInput(new TempDir(), "m.onnx", ["export", "--model", SampleModels.Model, "--mode", "unmerged", "--out", Path.Combine(Path.GetTempPath(), Guid.NewGuid().ToString("N") + ".onnx")], "--adapter");

    [TestMethod]
    public void Merge_CorruptSafetensorsCheckpoint()
    {
        using var dir = new TempDir();
        string ckpt = dir.File("ckpt");
        Directory.CreateDirectory(ckpt);
        File.Copy(Path.Combine(SampleModels.Model, "config.json"), Path.Combine(ckpt, "config.json"));
        byte[] bytes = File.ReadAllBytes(Path.Combine(SampleModels.Model, "model.safetensors"));
        File.WriteAllBytes(Path.Combine(ckpt, "model.safetensors"), bytes[..(bytes.Length / 2)]);
        AssertBadInput(dir, "o", ["merge", "--model", ckpt, "--adapter", SampleModels.Adapter, "--out", dir.File("o")], "model.safetensors");
    }

    [TestMethod]
    public void Merge_CorruptOnnxModel()
    {
        using var dir = new TempDir();
        File.WriteAllBytes(dir.File("in.onnx"), [0x08, 0x07, 0x12, 0xFF, 0xFF, 0xFF]);
        AssertBadInput(dir, "o.onnx", ["merge", "--model", dir.File("in.onnx"), "--adapter", SampleModels.Adapter, "--out", dir.File("o.onnx")], "in.onnx");
    }

    [TestMethod]
    public void Train_MalformedDataLine_NamesFileAndLine()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("data.jsonl"), "{\"text\": \"fine\"}\n{not json}\n");
        AssertBadInput(dir, "a", ["train", "--model", SampleModels.Model, "--data", dir.File("data.jsonl"), "--out", dir.File("a"), "--steps", "1"], "data.jsonl", "2");
    }

    [TestMethod]
    public void Train_InvalidRank() => AssertBadInput(new TempDir(), "a",
        ["train", "--model", SampleModels.Model, "--data", "x.jsonl", "--out", "a", "--rank", "0"], "--rank");
}

[TestClass]
public sealed class TrainTargetsTests
{
    [TestMethod]
    public void Train_RegexTargets_AdaptExactlyTheMatchedModulesAndReload()
    {
        using var dir = new TempDir();
        string adapter = dir.File("a");

        var (code, _, err) = CliHarness.Run("train", "--model", SampleModels.Model, "--data", Path.Combine(SampleModels.Model, "task.jsonl"),
            "--out", adapter, "--steps", "1", "--batch", "2", "--targets", @"model\.layers\.[01]\.self_attn\.(q|k)_proj");

        Assert.AreEqual(0, code, err);
        using (var loaded = OnnxLora.Core.Peft.PeftAdapter.Load(adapter))
        {
            CollectionAssert.AreEquivalent(
                new[] { "model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj", "model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.k_proj" },
                loaded.Modules.Select(m => m.ModulePath).ToArray());
        }
        var (ecode, _, eerr) = CliHarness.Run("export", "--model", SampleModels.Model, "--adapter", adapter, "--mode", "unmerged", "--out", dir.File("u.onnx"));
        Assert.AreEqual(0, ecode, eerr);
    }
}
