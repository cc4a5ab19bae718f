using Microsoft.ML.OnnxRuntime;
using OnnxLora.Core;
using OnnxLora.Testing;

namespace OnnxLora.MergeExport.Tests;

/// <summary>
/// <c>export --mode adapters</c> on the sample: one adapter-ready graph and one .onnx_adapter per adapter, run in one
/// ONNX Runtime session with the adapter switched per run, against each adapter's merged export (itself checked against
/// fp64 references elsewhere) and, with no adapter active, against the base export.
/// </summary>
[TestClass]
public sealed class AdapterModeExportTests
{
    [TestMethod]
    public void ThreeAdaptersOfDifferentRanks_ActiveInOneSession_MatchTheirMergedModels()
    {
        using var dir = new TempDir();
        string r4 = RandomAdapter(dir.File("r4"), rank: 4, alpha: 8, seed: 1);
        string r16 = RandomAdapter(dir.File("r16"), rank: 16, alpha: 16, seed: 2, rsLora: true);
        string[] adapters = [SampleModels.Adapter, r4, r16];

        var (code, _, err) = CliHarness.Run("export", "--model", SampleModels.Model, "--adapter", adapters[0], "--adapter", r4, "--adapter", r16,
            "--mode", "adapters", "--out", dir.File("out/adapters.onnx"));
        Assert.AreEqual(0, code, err);
        string[] files = [dir.File("out/tiny-llama-lora.onnx_adapter"), dir.File("out/r4.onnx_adapter"), dir.File("out/r16.onnx_adapter")];
        foreach (string f in files)
        {
            Assert.IsTrue(File.Exists(f), f);
        }

        var merged = new float[adapters.Length][];
        for (int k = 0; k < adapters.Length; k++)
        {
            string m = dir.File($"merged{k}.onnx");
            var (mc, _, merr) = CliHarness.Run("export", "--model", SampleModels.Model, "--adapter", adapters[k], "--mode", "merged", "--out", m);
            Assert.AreEqual(0, mc, merr);
            merged[k] = OnnxLogits.Run(m);
        }
        var (bc, _, berr) = CliHarness.Run("export", "--model", SampleModels.Model, "--mode", "base", "--out", dir.File("base.onnx"));
        Assert.AreEqual(0, bc, berr);
        float[] baseLogits = OnnxLogits.Run(dir.File("base.onnx"));

        using var session = new InferenceSession(dir.File("out/adapters.onnx"), new SessionOptions { IntraOpNumThreads = 1 });
        var ort = files.Select(f => OrtLoraAdapter.Create(f, null)).ToList();
        try
        {
            foreach (int k in new[] { 0, 1, 2, 1, 0, 2 })
            {
                using var options = new RunOptions();
                options.AddActiveLoraAdapter(ort[k]);
                float[] logits = RunLogits(session, options);
                double diff = OnnxLogits.MaxAbsDiff(merged[k], logits);
                Assert.IsLessThanOrEqualTo(1e-4, diff, $"{Path.GetFileName(files[k])}: base + active adapter vs merged model, max abs {diff}");
                Assert.IsGreaterThan(1e-3, OnnxLogits.MaxAbsDiff(baseLogits, merged[k]), "the adapter must change the logits (else the check is vacuous)");
            }
            using var none = new RunOptions();
            double toBase = OnnxLogits.MaxAbsDiff(baseLogits, RunLogits(session, none));
            Assert.IsLessThanOrEqualTo(1e-5, toBase, $"no adapter active vs the base model: max abs {toBase}");
        }
        finally
        {
            ort.ForEach(a => a.Dispose());
        }
    }

    [TestMethod]
    public void Validate_MergedAgainstTheAdapterModelWithItsAdapterActive_PassesAndReportsIt_AndAForeignAdapterIsOneLine()
    {
        using var dir = new TempDir();
        Assert.AreEqual(0, CliHarness.Run("export", "--model", SampleModels.Model, "--adapter", SampleModels.Adapter, "--mode", "adapters", "--out", dir.File("a.onnx")).ExitCode);
        Assert.AreEqual(0, CliHarness.Run("export", "--model", SampleModels.Model, "--adapter", SampleModels.Adapter, "--mode", "merged", "--out", dir.File("m.onnx")).ExitCode);
        string adapterFile = dir.File("tiny-llama-lora.onnx_adapter");

        var (code, json, err) = CliHarness.Run("validate", "--merged", dir.File("m.onnx"), "--adapters-model", dir.File("a.onnx"), "--onnx-adapter", adapterFile,
            "--runs", "3", "--warmup", "1", "--report", dir.File("report"), "--json");
        Assert.AreEqual(0, code, err + json);
        using (var report = System.Text.Json.JsonDocument.Parse(File.ReadAllText(dir.File("report/validation.json"))))
        {
            var models = report.RootElement.GetProperty("models").EnumerateArray().ToList();
            var adapterModel = models.Single(m => m.GetProperty("role").GetString() == "adapter");
            Assert.AreEqual(adapterFile, adapterModel.GetProperty("activeAdapter").GetString());
            var comparison = report.RootElement.GetProperty("comparisons").EnumerateArray().Single(c => c.GetProperty("reference").GetString() == "adapter");
            Assert.IsTrue(comparison.GetProperty("gated").GetBoolean());
        }

        // An adapter for other modules (MLP instead of attention) does not fit the graph's inputs: one line naming it.
        string foreign = dir.File("foreign.onnx_adapter");
        Core.Onnx.OnnxAdapterFile.Write(foreign, [new Core.Onnx.OnnxAdapterParameter("base_model.model.model.layers.0.mlp.up_proj.lora_A.weight", DType.F32, [128, 2], new byte[128 * 2 * 4])]);
        var (badCode, _, badErr) = CliHarness.Run("validate", "--merged", dir.File("m.onnx"), "--adapters-model", dir.File("a.onnx"), "--onnx-adapter", foreign,
            "--runs", "0", "--report", dir.File("report2"));
        Assert.AreEqual(2, badCode, badErr);
        Assert.AreEqual(1, badErr.Trim().Split('\n').Length, badErr);
        StringAssert.Contains(badErr, "foreign.onnx_adapter");
        StringAssert.Contains(badErr, "up_proj");
        Assert.IsFalse(Directory.Exists(dir.File("report2")), "no report for a refused input");
    }

    [TestMethod]
    public void Validate_SeveralPairsInOneSession_PassEachAgainstItsOwnAdapter_AndSwappedPairsFail()
    {
        using var dir = new TempDir();
        string r4 = RandomAdapter(dir.File("r4"), rank: 4, alpha: 8, seed: 1);
        string r16 = RandomAdapter(dir.File("r16"), rank: 16, alpha: 16, seed: 2, rsLora: true);
        string[] adapters = [SampleModels.Adapter, r4, r16];
        Assert.AreEqual(0, CliHarness.Run("export", "--model", SampleModels.Model, "--adapter", adapters[0], "--adapter", r4, "--adapter", r16,
            "--mode", "adapters", "--out", dir.File("g/adapters.onnx")).ExitCode);
        Assert.AreEqual(0, CliHarness.Run("export", "--model", SampleModels.Model, "--mode", "base", "--out", dir.File("base.onnx")).ExitCode);
        var args = new List<string> { "validate", "--adapters-model", dir.File("g/adapters.onnx"), "--base", dir.File("base.onnx"), "--runs", "3", "--warmup", "1", "--json" };
        string[] names = ["tiny-llama-lora", "r4", "r16"];
        for (int k = 0; k < adapters.Length; k++)
        {
            Assert.AreEqual(0, CliHarness.Run("export", "--model", SampleModels.Model, "--adapter", adapters[k], "--mode", "merged", "--out", dir.File($"m{k}.onnx")).ExitCode);
            args.AddRange(["--merged", dir.File($"m{k}.onnx"), "--onnx-adapter", dir.File($"g/{names[k]}.onnx_adapter")]);
        }

        var (code, json, err) = CliHarness.Run([.. args, "--report", dir.File("report")]);
        Assert.AreEqual(0, code, err + json);
        using (var result = System.Text.Json.JsonDocument.Parse(json))
        {
            Assert.AreEqual(3, result.RootElement.GetProperty("details").GetProperty("pairs").GetArrayLength());
        }
        for (int k = 0; k < adapters.Length; k++)
        {
            using var report = System.Text.Json.JsonDocument.Parse(File.ReadAllText(dir.File($"report/{names[k]}/validation.json")));
            var adapterModel = report.RootElement.GetProperty("models").EnumerateArray().Single(m => m.GetProperty("role").GetString() == "adapter");
            Assert.AreEqual(dir.File($"g/{names[k]}.onnx_adapter"), adapterModel.GetProperty("activeAdapter").GetString());
            var comparison = report.RootElement.GetProperty("comparisons").EnumerateArray().Single(c => c.GetProperty("reference").GetString() == "adapter");
            double maxAbs = comparison.GetProperty("outputs")[0].GetProperty("maxAbsError").GetDouble();
            Assert.IsLessThanOrEqualTo(1e-4, maxAbs, $"{names[k]}: merged vs the adapters model with its adapter active");
        }

        // Pairing the merged models with the wrong adapters must fail the gate: the session really switches adapters per pair.
        int swap = args.IndexOf(dir.File("g/r4.onnx_adapter"));
        int swapWith = args.IndexOf(dir.File("g/r16.onnx_adapter"));
        (args[swap], args[swapWith]) = (args[swapWith], args[swap]);
        var (swappedCode, swappedJson, swappedErr) = CliHarness.Run([.. args, "--report", dir.File("swapped")]);
        Assert.AreEqual(1, swappedCode, swappedErr + swappedJson);
        using var swapped = System.Text.Json.JsonDocument.Parse(swappedJson);
        var statuses = swapped.RootElement.GetProperty("details").GetProperty("pairs").EnumerateArray().Select(p => p.GetProperty("status").GetString()).ToArray();
        CollectionAssert.AreEqual(new[] { "passed", "gate-failed", "gate-failed" }, statuses);
    }

    [TestMethod]
    [DataRow("--merged", "m0.onnx", "--onnx-adapter", "a.onnx_adapter", "--merged", "m1.onnx")]
    [DataRow("--merged", "m0.onnx", "--onnx-adapter", "a.onnx_adapter", "--merged", "m1.onnx", "--onnx-adapter", "b.onnx_adapter", "--unmerged", "m0.onnx")]
    [DataRow("--merged", "m0.onnx", "--onnx-adapter", "a.onnx_adapter", "--onnx-adapter", "b.onnx_adapter")]
    public void Validate_PairsThatDoNotPairUp_AreOneLineBadInput_AndWriteNothing(params string[] pairs)
    {
        using var dir = new TempDir();
        var args = new List<string> { "validate", "--adapters-model", dir.File("g.onnx"), "--report", dir.File("report") };
        for (int i = 0; i < pairs.Length; i++)
        {
            args.Add(pairs[i].StartsWith("--", StringComparison.Ordinal) ? pairs[i] : dir.File(pairs[i]));
        }

        var (code, output, err) = CliHarness.Run([.. args]);

        Assert.AreEqual(2, code, err + output);
        Assert.AreEqual(1, err.Trim().Split('\n').Length, err);
        StringAssert.Contains(err, "--merged");
        StringAssert.Contains(err, "--onnx-adapter");
        Assert.IsFalse(Directory.Exists(dir.File("report")));
    }

    [TestMethod]
    public void WithPastAndGenAiFolder_HaveTheLoraInputsBesideTheCache_AndTheAdapterFilesInTheFolder()
    {
        using var dir = new TempDir();
        string r4 = RandomAdapter(dir.File("r4"), rank: 4, alpha: 8, seed: 1);
        var (code, _, err) = CliHarness.Run("export", "--model", SampleModels.Model, "--adapter", SampleModels.Adapter, "--adapter", r4,
            "--mode", "adapters", "--genai", dir.File("genai"));
        Assert.AreEqual(0, code, err);
        var (pastCode, _, pastErr) = CliHarness.Run("export", "--model", SampleModels.Model, "--adapter", SampleModels.Adapter,
            "--mode", "adapters", "--with-past", "--out", dir.File("past/model.onnx"));
        Assert.AreEqual(0, pastCode, pastErr);
        CollectionAssert.IsSubsetOf(new[] { "genai_config.json", "model.onnx", "tokenizer.json", "tiny-llama-lora.onnx_adapter", "r4.onnx_adapter" },
            Directory.GetFiles(dir.File("genai")).Select(Path.GetFileName).ToArray());
        Assert.IsTrue(File.Exists(dir.File("past/tiny-llama-lora.onnx_adapter")));

        foreach (string model in new[] { dir.File("genai/model.onnx"), dir.File("past/model.onnx") })
        {
            using var session = new InferenceSession(model);
            var inputs = session.InputMetadata.Keys.ToList();
            CollectionAssert.Contains(inputs, "past_key_values.0.key");
            // The LoRA factors are inputs with an empty default: ONNX Runtime lists them as overridable initializers.
            CollectionAssert.Contains(session.OverridableInitializerMetadata.Keys.ToList(), "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
            CollectionAssert.Contains(session.OutputMetadata.Keys.ToList(), "present.0.key");
        }
        // ONNX Runtime's own loader (the one GenAI's Adapters API calls) accepts the files.
        foreach (string f in new[] { "tiny-llama-lora", "r4" })
        {
            using var adapter = OrtLoraAdapter.Create(dir.File($"genai/{f}.onnx_adapter"), null);
        }
    }

    [TestMethod]
    public void DoraAdapter_IsRefusedWithOneLine_AndNothingIsWritten()
    {
        using var dir = new TempDir();
        string dora = RandomAdapter(dir.File("dora"), rank: 4, alpha: 8, seed: 3, dora: true);
        var (code, output, err) = CliHarness.Run("export", "--model", SampleModels.Model, "--adapter", dora, "--mode", "adapters", "--out", dir.File("out/a.onnx"));
        Assert.AreEqual(2, code, err);
        Assert.AreEqual(string.Empty, output);
        Assert.AreEqual(1, err.Trim().Split('\n').Length, err);
        StringAssert.Contains(err, "DoRA");
        Assert.IsFalse(Directory.Exists(dir.File("out")) && Directory.EnumerateFileSystemEntries(dir.File("out")).Any(), "nothing written");
    }

    private static float[] RunLogits(InferenceSession session, RunOptions options)
    {
        var (ids, mask) = OnnxLogits.Inputs(512);
        using var idsValue = OrtValue.CreateTensorValueFromMemory(ids, [OnnxLogits.Batch, OnnxLogits.Sequence]);
        using var maskValue = OrtValue.CreateTensorValueFromMemory(mask, [OnnxLogits.Batch, OnnxLogits.Sequence]);
        using var outputs = session.Run(options, ["input_ids", "attention_mask"], [idsValue, maskValue], ["logits"]);
        return outputs[0].GetTensorDataAsSpan<float>().ToArray();
    }

    private static string RandomAdapter(string path, int rank, double alpha, int seed, bool rsLora = false, bool dora = false) =>
        RandomLoraAdapter.Write(path, SampleModels.Adapter, rank, alpha, seed, rsLora, dora);
}
