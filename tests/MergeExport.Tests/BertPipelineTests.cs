using System.Text.Json;
using Microsoft.ML.OnnxRuntime;
using OnnxLora.Core.HuggingFace;
using OnnxLora.Core.Peft;
using OnnxLora.Core.Safetensors;
using OnnxLora.Models.Tests.Reference;
using OnnxLora.Training.Sample;

namespace OnnxLora.MergeExport.Tests;

/// <summary>
/// The BERT classifier path a user takes (issue 19): train a SEQ_CLS adapter (PEFT's keys
/// base_model.model.bert.… and the head under modules_to_save), then export / merge / run with it.
/// </summary>
[TestClass]
public sealed class BertPipelineTests
{
    private static readonly Lazy<(string Model, string Adapter)> Trained = new(TrainOnce);

    private static string Root { get; } = Path.Combine(Path.GetTempPath(), "onnxlora-cli-tests", "bert-" + Guid.NewGuid().ToString("N"));

    [ClassCleanup]
    public static void Cleanup()
    {
        if (Directory.Exists(Root))
        {
            Directory.Delete(Root, recursive: true);
        }
    }

    [TestMethod]
    public void TrainedAdapter_HasPeftsSeqClsSpelling()
    {
        using var adapter = PeftAdapter.Load(Trained.Value.Adapter);
        Assert.AreEqual("SEQ_CLS", adapter.Config.TaskType);
        CollectionAssert.AreEqual(new[] { "classifier" }, adapter.Config.ModulesToSave!.ToArray());
        var keys = adapter.Weights.Tensors.Select(t => t.Name).ToList();
        CollectionAssert.Contains(keys, "base_model.model.classifier.weight");
        CollectionAssert.Contains(keys, "base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight");
    }

    [TestMethod]
    [DataRow("merged")]
    [DataRow("unmerged")]
    public void Export_SeqClsAdapter_WritesLogitsWithTokenTypeIds_EqualToAnFp64Reference(string mode)
    {
        var (model, adapter) = Trained.Value;
        using var dir = new TempDir();
        string onnx = dir.File($"{mode}.onnx");

        var (code, _, err) = CliHarness.Run("export", "--model", model, "--adapter", adapter, "--mode", mode, "--out", onnx);

        Assert.AreEqual(0, code, err);
        using var session = new InferenceSession(onnx);
        CollectionAssert.AreEqual(new[] { "input_ids", "attention_mask", "token_type_ids" }, session.InputMetadata.Keys.ToArray());
        CollectionAssert.AreEqual(new[] { "logits" }, session.OutputMetadata.Keys.ToArray());
        AssertLogitsMatchReference(session, model, adapter, out double maxError);
        Console.WriteLine($"{mode}: max abs error of logits vs the fp64 reference {maxError:G3}");
    }

    [TestMethod]
    public void Merge_SeqClsAdapterIntoABareEncoder_SaysTheHeadIsMissing()
    {
        var (model, adapter) = Trained.Value;
        using var dir = new TempDir();
        string encoder = BareEncoder(model, dir.File("encoder"));

        var (code, _, err) = CliHarness.Run("merge", "--model", encoder, "--adapter", adapter, "--out", dir.File("merged"));

        Assert.AreEqual(2, code, err);
        StringAssert.Contains(err, "carries a trained head 'classifier'");
        StringAssert.Contains(err, "SEQ_CLS");
        Assert.IsFalse(Directory.Exists(dir.File("merged")));
    }

    [TestMethod]
    public void Export_SeqClsAdapterOnABareEncoder_SaysTheHeadIsMissing()
    {
        var (model, adapter) = Trained.Value;
        using var dir = new TempDir();
        string encoder = BareEncoder(model, dir.File("encoder"));

        var (code, _, err) = CliHarness.Run("export", "--model", encoder, "--adapter", adapter, "--mode", "merged", "--out", dir.File("m.onnx"));

        Assert.AreEqual(2, code, err);
        StringAssert.Contains(err, "carries a trained head 'classifier'");
    }

    [TestMethod]
    public void Export_BertPrefixedAdapterWithoutHead_FitsABareEncoder()
    {
        var (model, adapter) = Trained.Value;
        using var dir = new TempDir();
        string encoder = BareEncoder(model, dir.File("encoder"));
        string bodyOnly = WithoutHead(adapter, dir.File("body-adapter"));

        var (code, _, err) = CliHarness.Run("export", "--model", encoder, "--adapter", bodyOnly, "--mode", "unmerged", "--out", dir.File("u.onnx"));

        Assert.AreEqual(0, code, err);
        using var session = new InferenceSession(dir.File("u.onnx"));
        CollectionAssert.AreEqual(new[] { "last_hidden_state", "pooler_output" }, session.OutputMetadata.Keys.ToArray());
        Assert.IsTrue(session.ModelMetadata.CustomMetadataMap.ContainsKey("lora_rank"));
    }

    [TestMethod]
    public void Export_UnsupportedBertHead_IsAnErrorNamingIt()
    {
        var (model, _) = Trained.Value;
        using var dir = new TempDir();
        string masked = dir.File("masked");
        Directory.CreateDirectory(masked);
        File.Copy(Path.Combine(model, "model.safetensors"), Path.Combine(masked, "model.safetensors"));
        (BertConfig.Load(model) with { Architectures = ["BertForMaskedLM"] }).Save(masked);

        var (code, _, err) = CliHarness.Run("export", "--model", masked, "--mode", "base", "--out", dir.File("b.onnx"));

        Assert.AreEqual(2, code, err);
        StringAssert.Contains(err, "BertForMaskedLM");
        Assert.IsFalse(File.Exists(dir.File("b.onnx")));
    }

    [TestMethod]
    public void Run_BertClassifierWithItsAdapter_MergesExportsAndValidates()
    {
        var (model, adapter) = Trained.Value;
        using var dir = new TempDir();

        var (code, output, err) = CliHarness.Run("run", "--model", model, "--adapter", adapter, "--out", dir.File("run"), "--runs", "3", "--warmup", "1");

        Assert.AreEqual(0, code, err + output);
        StringAssert.Contains(err + output, "merged vs unmerged     logits");
    }

    [TestMethod]
    public void Validate_Data_ReportsAccuracyOfMergedUnmergedAndBase_AsAnFp64ReferenceCounts()
    {
        var (model, adapter) = Trained.Value;
        using var dir = new TempDir();
        var files = ExportThree(model, adapter, dir);
        string data = dir.File("data.jsonl");
        File.WriteAllLines(data, File.ReadLines(Path.Combine(model, SampleGenerator.TaskFileName)).Take(60));

        var (code, output, err) = CliHarness.Run("validate", "--merged", files.Merged, "--unmerged", files.Unmerged, "--base", files.Base, "--data", data,
            "--max-metric-delta", "0", "--runs", "0", "--warmup", "0", "--report", dir.File("report"));

        Assert.AreEqual(0, code, err + output);
        using var report = JsonDocument.Parse(File.ReadAllText(dir.File("report/validation.json")));
        var task = report.RootElement.GetProperty("taskMetrics");
        Assert.AreEqual("accuracy", task.GetProperty("metric").GetString());
        Assert.AreEqual(60, task.GetProperty("examples").GetInt32());
        var reported = task.GetProperty("models").EnumerateArray().ToDictionary(m => m.GetProperty("role").GetString()!, m => m.GetProperty("value").GetDouble());
        var config = BertConfig.Load(model);
        var rows = File.ReadLines(data).Select(l => JsonDocument.Parse(l).RootElement).Select(r =>
            (Ids: r.GetProperty("input_ids").EnumerateArray().Select(v => v.GetInt64()).ToArray(), Label: r.GetProperty("label").GetInt32())).ToList();
        double Accuracy(Weights w) => rows.Count(r =>
        {
            var logits = ReferenceLogits(config, w, r.Ids, Enumerable.Repeat(1L, r.Ids.Length).ToArray(), new long[r.Ids.Length]);
            return (logits[1] > logits[0] ? 1 : 0) == r.Label;
        }) / (double)rows.Count;
        double merged = Accuracy(ReferenceWeights(model, adapter)), baseline = Accuracy(ReferenceWeights(model, null));
        Console.WriteLine($"accuracy on 60 rows: reference merged {merged:P2}, base {baseline:P2}; reported merged {reported["merged"]:P2}, unmerged {reported["unmerged"]:P2}, base {reported["base"]:P2}");
        Assert.AreEqual(merged, reported["merged"], 1e-12);
        Assert.AreEqual(merged, reported["unmerged"], 1e-12);
        Assert.AreEqual(baseline, reported["base"], 1e-12);
        Assert.IsGreaterThan(baseline + 0.2, merged, "the trained adapter should buy accuracy on its own task");
        StringAssert.Contains(File.ReadAllText(dir.File("report/validation.md")), "### Task metric");
        StringAssert.Contains(File.ReadAllText(dir.File("report/validation.html")), "<h2>Task metric</h2>");
        Assert.IsTrue(report.RootElement.GetProperty("gates").EnumerateArray().Any(g => g.GetProperty("gate").GetString() == "max-metric-delta" && g.GetProperty("enabled").GetBoolean() && g.GetProperty("passed").GetBoolean()));
    }

    [TestMethod]
    public void Validate_MaxMetricDelta_FailsWhenTheComparedModelsDisagree()
    {
        var (model, adapter) = Trained.Value;
        using var dir = new TempDir();
        var files = ExportThree(model, adapter, dir);

        // The base graph stands in for a broken unmerged model: its accuracy differs from merged's.
        var (code, _, err) = CliHarness.Run("validate", "--merged", files.Merged, "--unmerged", files.Base, "--data", Path.Combine(model, SampleGenerator.TaskFileName),
            "--max-metric-delta", "0.01", "--atol", "100", "--min-top1", "0", "--runs", "0", "--warmup", "0", "--report", dir.File("report"));

        Assert.AreEqual(1, code, err);
        StringAssert.Contains(err, "gate failed: accuracy on");
    }

    [TestMethod]
    public void Validate_DataWithTextRows_IsBadInputNamingTheLine()
    {
        var (model, adapter) = Trained.Value;
        using var dir = new TempDir();
        var files = ExportThree(model, adapter, dir);
        string data = dir.File("text.jsonl");
        File.WriteAllText(data, "{\"input_ids\": [2, 5, 3], \"label\": 1}\n{\"text\": \"a sentence\", \"label\": 0}\n");

        var (code, _, err) = CliHarness.Run("validate", "--merged", files.Merged, "--unmerged", files.Unmerged, "--data", data, "--runs", "0", "--report", dir.File("report"));

        Assert.AreEqual(2, code, err);
        StringAssert.Contains(err, "line 2");
        StringAssert.Contains(err, "pre-tokenize");
    }

    [TestMethod]
    public void Run_OnTheCommittedBertSample_TrainsAndReportsAccuracy()
    {
        using var dir = new TempDir();
        string sample = Path.Combine(SampleModels.Root, "models", ClassifierSample.DefaultName);

        var (code, output, err) = CliHarness.Run("run", "--model", sample, "--out", dir.File("run"), "--train-steps", "60", "--runs", "3", "--warmup", "1");

        Assert.AreEqual(0, code, err + output);
        StringAssert.Contains(output, "eval accuracy");
        // The classifier head is a modules_to_save replacement, which an .onnx_adapter cannot carry: the step is skipped, saying why.
        StringAssert.Contains(output, "skipping the ONNX Runtime adapters graph");
        StringAssert.Contains(output, "modules_to_save");
        Assert.IsFalse(File.Exists(dir.File("run/adapters.onnx")));
        using var report = JsonDocument.Parse(File.ReadAllText(dir.File("run/report/validation.json")));
        var values = report.RootElement.GetProperty("taskMetrics").GetProperty("models").EnumerateArray()
            .ToDictionary(m => m.GetProperty("role").GetString()!, m => m.GetProperty("value").GetDouble());
        Console.WriteLine($"tiny-bert-cls run: accuracy merged {values["merged"]:P2}, unmerged {values["unmerged"]:P2}, base {values["base"]:P2}");
        Assert.AreEqual(values["merged"], values["unmerged"]);
        Assert.IsGreaterThan(values["base"] + 0.2, values["merged"]);
    }

    [TestMethod]
    public void CommittedBertSample_TextFilesAreWhatTheGeneratorWrites()
    {
        using var dir = new TempDir();
        ClassifierSample.Generate(dir.File("fresh"));
        foreach (string name in new[] { "config.json", SampleGenerator.TaskFileName })
        {
            CollectionAssert.AreEqual(File.ReadAllBytes(Path.Combine(SampleModels.Root, "models", ClassifierSample.DefaultName, name)), File.ReadAllBytes(dir.File("fresh/" + name)), name);
        }
    }

    private static (string Merged, string Unmerged, string Base) ExportThree(string model, string adapter, TempDir dir)
    {
        (string, string, string) files = (dir.File("merged.onnx"), dir.File("unmerged.onnx"), dir.File("base.onnx"));
        foreach (var (mode, path) in new[] { ("merged", files.Item1), ("unmerged", files.Item2), ("base", files.Item3) })
        {
            var args = mode == "base" ? new[] { "export", "--model", model, "--mode", mode, "--out", path } : ["export", "--model", model, "--adapter", adapter, "--mode", mode, "--out", path];
            var (code, _, err) = CliHarness.Run(args);
            Assert.AreEqual(0, code, err);
        }
        return files;
    }

    private static (string Model, string Adapter) TrainOnce()
    {
        Directory.CreateDirectory(Root);
        string model = Path.Combine(Root, "model");
        ClassifierSample.Generate(model);
        string adapter = Path.Combine(Root, "adapter");
        var (code, _, err) = CliHarness.Run("train", "--model", model, "--data", Path.Combine(model, SampleGenerator.TaskFileName), "--out", adapter,
            "--steps", "40", "--batch", "8", "--rank", "4", "--alpha", "8", "--lr", "1e-2", "--targets", "query,key,value,dense", "--threads", "1");
        Assert.AreEqual(0, code, err);
        return (model, adapter);
    }

    /// <summary>The classifier checkpoint's encoder as a BertModel checkpoint (no bert. prefix, no head).</summary>
    private static string BareEncoder(string model, string dir)
    {
        Directory.CreateDirectory(dir);
        using (var checkpoint = SafetensorsCheckpoint.Open(model))
        {
            var kept = checkpoint.Tensors.Where(t => t.Name.StartsWith("bert.", StringComparison.Ordinal)).ToList();
            using var writer = SafetensorsWriter.Create(Path.Combine(dir, "model.safetensors"),
                kept.Select(t => new TensorSpec(t.Name["bert.".Length..], t.DType, t.Shape.ToArray())).ToList(), null, overwrite: false);
            foreach (var t in kept)
            {
                writer.Write(t.Name["bert.".Length..], checkpoint.Shards.Single().GetBytes(t));
            }
            writer.Commit();
        }
        (BertConfig.Load(model) with { Architectures = ["BertModel"] }).Save(dir);
        return dir;
    }

    /// <summary>The adapter without its head: PEFT's FEATURE_EXTRACTION spelling of the same LoRA tensors (keys base_model.model.bert.…).</summary>
    private static string WithoutHead(string adapter, string dir)
    {
        using var loaded = PeftAdapter.Load(adapter);
        var tensors = loaded.Weights.Tensors.Where(t => !t.Name.Contains(".classifier.", StringComparison.Ordinal))
            .Select(t => (t.Spec, (ReadOnlyMemory<byte>)loaded.Weights.GetBytes(t).ToArray())).ToList();
        PeftAdapter.Save(dir, loaded.Config with { TaskType = "FEATURE_EXTRACTION", ModulesToSave = null }, tensors);
        return dir;
    }

    /// <summary>
    /// The checkpoint's tensors in fp64, with the adapter merged by hand when given: W + alpha/r · B·A from the raw
    /// adapter file (PEFT's formula, no OnnxLora merge code), the head replaced by the adapter's saved copy.
    /// </summary>
    private static Weights ReferenceWeights(string model, string? adapterDir)
    {
        var w = Weights.Read(model);
        if (adapterDir is null)
        {
            return w;
        }
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(adapterDir, "adapter_config.json")));
        using var file = SafetensorsFile.Open(Path.Combine(adapterDir, "adapter_model.safetensors"));
        int r = json.RootElement.GetProperty("r").GetInt32();
        double scaling = json.RootElement.GetProperty("lora_alpha").GetDouble() / r;
        foreach (var a in file.Tensors.Where(t => t.Name.EndsWith(".lora_A.weight", StringComparison.Ordinal)))
        {
            string module = a.Name["base_model.model.".Length..^".lora_A.weight".Length];
            var b = file.Tensors.Single(t => t.Name == $"base_model.model.{module}.lora_B.weight");
            int outF = (int)b.Shape[0], inF = (int)a.Shape[1];
            var delta = PeftReference.Delta(file.ReadSingles(a), file.ReadSingles(b), r, inF, outF, scaling);
            w[module + ".weight"] = w[module + ".weight"].Select((v, i) => v + delta[i]).ToArray();
        }
        foreach (string leaf in new[] { "weight", "bias" })
        {
            w["classifier." + leaf] = file.ReadSingles(file.Tensors.Single(t => t.Name == "base_model.model.classifier." + leaf)).Select(v => (double)v).ToArray();
        }
        return w;
    }

    /// <summary>classifier(pooler(BERT(ids, mask, types))) for one row, in fp64 (Hugging Face's equations).</summary>
    private static double[] ReferenceLogits(BertConfig config, Weights w, long[] ids, long[] mask, long[] types)
    {
        var hidden = BertReference.LastHiddenState(config, w, ids, mask, types, prefix: "bert.");
        var pooled = BertReference.Pooled(config, w, hidden, prefix: "bert.");
        return Ops.Linear(pooled, w["classifier.weight"], w["classifier.bias"], w["classifier.bias"].Length);
    }

    /// <summary>Exported logits against <see cref="ReferenceLogits"/> of the hand-merged weights, for token types all 0 and partly 1.</summary>
    private static void AssertLogitsMatchReference(InferenceSession session, string model, string adapterDir, out double maxError)
    {
        var config = BertConfig.Load(model);
        var w = ReferenceWeights(model, adapterDir);
        const int batch = 2, seq = 7, labels = 2;
        long[] ids = [2, 10, 20, 30, 40, 50, 3, 2, 60, 5, 33, 44, 3, 0];
        long[] mask = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0];
        maxError = 0;
        foreach (long[] types in new[] { new long[batch * seq], [0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1] })
        {
            using var idsValue = OrtValue.CreateTensorValueFromMemory(ids, [batch, seq]);
            using var maskValue = OrtValue.CreateTensorValueFromMemory(mask, [batch, seq]);
            using var typesValue = OrtValue.CreateTensorValueFromMemory(types, [batch, seq]);
            using var runOptions = new RunOptions();
            using var outputs = session.Run(runOptions, ["input_ids", "attention_mask", "token_type_ids"], [idsValue, maskValue, typesValue], ["logits"]);
            float[] actual = outputs[0].GetTensorDataAsSpan<float>().ToArray();
            CollectionAssert.AreEqual(new long[] { batch, labels }, outputs[0].GetTensorTypeAndShape().Shape);
            for (int row = 0; row < batch; row++)
            {
                var expected = ReferenceLogits(config, w, ids[(row * seq)..((row + 1) * seq)], mask[(row * seq)..((row + 1) * seq)], types[(row * seq)..((row + 1) * seq)]);
                for (int k = 0; k < labels; k++)
                {
                    maxError = Math.Max(maxError, Math.Abs(actual[row * labels + k] - expected[k]));
                }
            }
        }
        Assert.IsLessThan(1e-4, maxError);
    }
}
