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

    private static (string Model, string Adapter) TrainOnce()
    {
        Directory.CreateDirectory(Root);
        string model = Path.Combine(Root, "model");
        ClassifierSample.Generate(model);
        string adapter = Path.Combine(Root, "adapter");
        var (code, _, err) = CliHarness.Run("train", "--model", model, "--data", Path.Combine(model, SampleGenerator.TaskFileName), "--out", adapter,
            "--steps", "4", "--batch", "8", "--rank", "4", "--alpha", "8", "--lr", "1e-2", "--targets", "query,key,value,dense", "--threads", "1");
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
    /// logits = classifier(pooler(BERT(ids, types))) in fp64 from the checkpoint with the adapter merged by hand
    /// (W + alpha/r · B·A from the raw adapter file, the head taken from it), for token types all 0 and half 1.
    /// </summary>
    private static void AssertLogitsMatchReference(InferenceSession session, string model, string adapterDir, out double maxError)
    {
        var config = BertConfig.Load(model);
        var w = Weights.Read(model);
        using (var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(adapterDir, "adapter_config.json"))))
        using (var file = SafetensorsFile.Open(Path.Combine(adapterDir, "adapter_model.safetensors")))
        {
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
            w["classifier.weight"] = file.ReadSingles(file.Tensors.Single(t => t.Name == "base_model.model.classifier.weight")).Select(v => (double)v).ToArray();
            w["classifier.bias"] = file.ReadSingles(file.Tensors.Single(t => t.Name == "base_model.model.classifier.bias")).Select(v => (double)v).ToArray();
        }
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
                var hidden = BertReference.LastHiddenState(config, w, ids[(row * seq)..((row + 1) * seq)], mask[(row * seq)..((row + 1) * seq)], types[(row * seq)..((row + 1) * seq)], prefix: "bert.");
                var pooled = BertReference.Pooled(config, w, hidden, prefix: "bert.");
                var expected = Ops.Linear(pooled, w["classifier.weight"], w["classifier.bias"], labels);
                for (int k = 0; k < labels; k++)
                {
                    maxError = Math.Max(maxError, Math.Abs(actual[row * labels + k] - expected[k]));
                }
            }
        }
        Assert.IsLessThan(1e-4, maxError);
    }
}
