using System.Text.Json;
using OnnxLora.Core;
using OnnxLora.Core.Peft;
using OnnxLora.Core.Safetensors;

namespace OnnxLora.MergeExport.Tests;

/// <summary>
/// <c>export --mode adapters</c> on the BERT family: the classifier sample with a LoRA adapter on the encoder's query and
/// value projections (no modules_to_save, so it can be an .onnx_adapter), validated in ONNX Runtime as base + active
/// adapter against the same adapter's merged export (whose weights are folded at export, an independent path).
/// </summary>
[TestClass]
public sealed class BertAdapterModeTests
{
    [TestMethod]
    public void BertClassifier_AdapterActiveOnTheAdaptersGraph_MatchesItsMergedExport()
    {
        using var dir = new TempDir();
        string model = dir.File("bert");
        Assert.AreEqual(0, CliHarness.Run("sample", "--kind", "bert-cls", "--out", model).ExitCode);
        string adapter = WriteEncoderAdapter(dir.File("bert-lora"), model);

        var exported = CliHarness.Run("export", "--model", model, "--adapter", adapter, "--mode", "adapters", "--out", dir.File("adapters.onnx"));
        Assert.AreEqual(0, exported.ExitCode, exported.Err);
        Assert.AreEqual(0, CliHarness.Run("export", "--model", model, "--adapter", adapter, "--mode", "merged", "--out", dir.File("merged.onnx")).ExitCode);
        Assert.AreEqual(0, CliHarness.Run("export", "--model", model, "--mode", "base", "--out", dir.File("base.onnx")).ExitCode);

        var (code, json, err) = CliHarness.Run("validate", "--merged", dir.File("merged.onnx"), "--adapters-model", dir.File("adapters.onnx"),
            "--onnx-adapter", dir.File("bert-lora.onnx_adapter"), "--base", dir.File("base.onnx"), "--runs", "2", "--warmup", "1",
            "--report", dir.File("report"), "--json");
        Assert.AreEqual(0, code, err + json);
        using var report = JsonDocument.Parse(File.ReadAllText(dir.File("report/validation.json")));
        double MaxAbs(string reference) => report.RootElement.GetProperty("comparisons").EnumerateArray()
            .Single(c => c.GetProperty("reference").GetString() == reference).GetProperty("outputs").EnumerateArray()
            .Max(o => o.GetProperty("maxAbsError").GetDouble());
        Assert.IsLessThanOrEqualTo(1e-4, MaxAbs("adapter"), "merged vs base + active adapter");
        // The adapter changes the logits, so the equality above is not vacuous.
        Assert.IsGreaterThan(1e-3, MaxAbs("base"), "merged vs base");
    }

    /// <summary>LoRA r = 4 on every layer's attention query and value, random factors, PEFT's keys for BertForSequenceClassification.</summary>
    private static string WriteEncoderAdapter(string path, string model)
    {
        using var config = JsonDocument.Parse(File.ReadAllText(Path.Combine(model, "config.json")));
        int hidden = config.RootElement.GetProperty("hidden_size").GetInt32();
        int layers = config.RootElement.GetProperty("num_hidden_layers").GetInt32();
        const int rank = 4;
        var rng = new Random(17);
        float[] Values(int n) => [.. Enumerable.Range(0, n).Select(_ => (float)((rng.NextDouble() * 2 - 1) * 0.3))];
        var tensors = new List<(TensorSpec, ReadOnlyMemory<byte>)>();
        for (int i = 0; i < layers; i++)
        {
            foreach (string projection in new[] { "query", "value" })
            {
                string module = $"bert.encoder.layer.{i}.attention.self.{projection}";
                tensors.Add(PeftAdapter.EncodeTensor(PeftAdapter.KeyFor(module, AdapterModuleKind.Lora, AdapterTensorRole.LoraA), [rank, hidden], Values(rank * hidden), DType.F32));
                tensors.Add(PeftAdapter.EncodeTensor(PeftAdapter.KeyFor(module, AdapterModuleKind.Lora, AdapterTensorRole.LoraB), [hidden, rank], Values(hidden * rank), DType.F32));
            }
        }
        PeftAdapter.Save(path, new PeftAdapterConfig { R = rank, Alpha = 8, TargetModules = TargetModules.FromList(["query", "value"]) }, tensors);
        return path;
    }
}
