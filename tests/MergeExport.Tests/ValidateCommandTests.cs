using System.Text.Json;
using OnnxLora.Core;
using OnnxLora.Core.Onnx;

namespace OnnxLora.MergeExport.Tests;

[TestClass]
public sealed class ValidateCommandTests
{
    private const int Vocab = 11;
    private const int Hidden = 4;

    /// <summary>A tiny LM: logits = Gather(E, input_ids) · H, with attention_mask declared (and multiplied in).</summary>
    internal static string TinyLm(string path, float headScale = 1f)
    {
        var b = new OnnxGraphBuilder(17);
        string ids = b.AddInput("input_ids", DType.I64, "batch", "sequence");
        string mask = b.AddInput("attention_mask", DType.I64, "batch", "sequence");
        var rng = new Random(42);
        float[] embed = Enumerable.Range(0, Vocab * Hidden).Select(_ => (float)(rng.NextDouble() - 0.5)).ToArray();
        float[] head = Enumerable.Range(0, Hidden * Vocab).Select(_ => headScale * (float)(rng.NextDouble() - 0.5)).ToArray();
        string e = b.AddInitializer("model.embed_tokens.weight", DType.F32, [Vocab, Hidden], embed);
        string h = b.AddInitializer("lm_head.weight_T", DType.F32, [Hidden, Vocab], head);
        string x = b.AddNode("Gather", [e, ids], "embed");
        string m = b.AddNode("Cast", [mask], "mask_cast", OnnxAttributes.Int("to", (long)Onnx.TensorProto.Types.DataType.Float));
        string m3 = b.AddNode("Unsqueeze", [m, b.AddConstant("axes", [1], [2L])], "mask_unsq");
        string xm = b.AddNode("Mul", [x, m3], "masked");
        b.AddNode("MatMul", [xm, h], ["logits"], "head");
        b.AddOutput("logits", DType.F32, "batch", "sequence", Vocab);
        OnnxFile.Save(b.Build(), path);
        return path;
    }

    [TestMethod]
    public void Validate_IdenticalModels_PassesAndWritesReports()
    {
        using var dir = new TempDir();
        string merged = TinyLm(dir.File("merged.onnx"));
        string unmerged = TinyLm(dir.File("unmerged.onnx"));
        string report = dir.File("report");

        var (code, json, err) = CliHarness.Run("validate", "--merged", merged, "--unmerged", unmerged, "--base", unmerged,
            "--device", "cpu", "--runs", "4", "--warmup", "1", "--seq", "8", "--report", report, "--json");

        Assert.AreEqual(0, code, err);
        using var doc = JsonDocument.Parse(json);
        Assert.AreEqual("passed", doc.RootElement.GetProperty("status").GetString());
        Assert.AreEqual(0, doc.RootElement.GetProperty("exitCode").GetInt32());
        Assert.AreEqual(JsonValueKind.Null, doc.RootElement.GetProperty("errorKind").ValueKind);
        Assert.AreEqual(0, doc.RootElement.GetProperty("failedGates").GetArrayLength());
        foreach (string key in new[] { "reportJson", "reportMarkdown", "reportHtml" })
        {
            Assert.IsTrue(File.Exists(doc.RootElement.GetProperty("outputs").GetProperty(key).GetString()), key);
        }
    }

    [TestMethod]
    public void Validate_GraphOptimizationAndArenaOptions_ReachTheSessionsAndTheReport()
    {
        using var dir = new TempDir();
        string m = TinyLm(dir.File("m.onnx"));
        string report = dir.File("report");

        var (code, _, err) = CliHarness.Run("validate", "--merged", m, "--unmerged", m, "--device", "cpu", "--runs", "0", "--seq", "4",
            "--graph-optimization", "none", "--no-cpu-mem-arena", "--report", report);

        Assert.AreEqual(0, code, err);
        var session = OnnxLora.Validate.ValidationReport.Load(Path.Combine(report, "validation.json")).Provider.Session;
        Assert.AreEqual(OnnxLora.Validate.GraphOptimization.None, session.GraphOptimization);
        Assert.IsFalse(session.CpuMemArena);
        StringAssert.Contains(File.ReadAllText(Path.Combine(report, "validation.md")), "graph optimisation none, sequential execution, CPU memory arena off");
    }

    [TestMethod]
    public void Validate_WrongMergedModel_ExitsOneNamingTheOutput()
    {
        using var dir = new TempDir();
        string merged = TinyLm(dir.File("merged.onnx"), headScale: 2f);
        string unmerged = TinyLm(dir.File("unmerged.onnx"));

        var (code, json, _) = CliHarness.Run("validate", "--merged", merged, "--unmerged", unmerged, "--device", "cpu",
            "--runs", "0", "--seq", "8", "--report", dir.File("report"), "--json");

        Assert.AreEqual(1, code);
        using var doc = JsonDocument.Parse(json);
        Assert.AreEqual("gate-failed", doc.RootElement.GetProperty("status").GetString());
        Assert.AreEqual(1, doc.RootElement.GetProperty("exitCode").GetInt32());
        var gates = doc.RootElement.GetProperty("failedGates").EnumerateArray().ToList();
        Assert.IsNotEmpty(gates);
        Assert.IsTrue(gates.Any(g => g.GetProperty("output").GetString() == "logits"), json);
    }

    [TestMethod]
    public void Validate_CudaWithoutGpu_FallsBackAndSaysWhy()
    {
        using var dir = new TempDir();
        string m = TinyLm(dir.File("m.onnx"));
        var (code, json, err) = CliHarness.Run("validate", "--merged", m, "--unmerged", m, "--device", "cuda",
            "--runs", "0", "--seq", "4", "--report", dir.File("r"), "--json");
        if (json.Contains("CUDAExecutionProvider\"", StringComparison.Ordinal))
        {
            Assert.Inconclusive("this machine has a working CUDA provider");
        }
        Assert.AreEqual(0, code, err);
        using var doc = JsonDocument.Parse(json);
        Assert.AreEqual("CPUExecutionProvider", doc.RootElement.GetProperty("details").GetProperty("provider").GetString());
        Assert.IsFalse(string.IsNullOrWhiteSpace(doc.RootElement.GetProperty("details").GetProperty("fallbackReason").GetString()));
    }

    [TestMethod]
    public void Validate_AutoWithoutCuda_PrintsOneShortLine_FullTextOnlyWithVerbose()
    {
        using var dir = new TempDir();
        string m = TinyLm(dir.File("m.onnx"));
        string[] args = ["validate", "--merged", m, "--unmerged", m, "--device", "auto", "--runs", "0", "--seq", "4"];

        var (code, stdout, err) = CliHarness.Run([.. args, "--report", dir.File("r")]);
        if (stdout.Contains("provider: CUDAExecutionProvider", StringComparison.Ordinal))
        {
            Assert.Inconclusive("this machine has a working CUDA provider");
        }
        var (verboseCode, verbose, verboseErr) = CliHarness.Run([.. args, "--report", dir.File("v"), "--verbose"]);

        Assert.AreEqual(0, code, err);
        Assert.AreEqual(0, verboseCode, verboseErr);
        string[] lines = stdout.Split('\n').Where(l => l.Contains("CUDA", StringComparison.Ordinal)).ToArray();
        Assert.HasCount(1, lines, stdout);
        Assert.MatchesRegex(@"^CUDA unavailable: [^|\r\n]+; using CPU\r?$", lines[0]);
        Assert.DoesNotContain("ErrorCode", stdout, "ONNX Runtime's full text is left to the report");
        string full = File.ReadAllText(Path.Combine(dir.File("r"), "validation.md"));
        StringAssert.Contains(full, "ErrorCode", "the report keeps ONNX Runtime's full text");
        StringAssert.Contains(verbose, lines[0].TrimEnd('\r'));
        StringAssert.Contains(verbose, "ErrorCode");
    }

    [TestMethod]
    public void Validate_CudaWithoutGpuAndNoFallback_ExitsTwoWithClearMessage()
    {
        using var dir = new TempDir();
        string m = TinyLm(dir.File("m.onnx"));
        var (code, _, err) = CliHarness.Run("validate", "--merged", m, "--unmerged", m, "--device", "cuda", "--no-cpu-fallback",
            "--runs", "0", "--seq", "4", "--report", dir.File("r"));
        if (code == 0)
        {
            Assert.Inconclusive("this machine has a working CUDA provider");
        }
        Assert.AreEqual(2, code, err);
        StringAssert.Contains(err, "CUDA");
        Assert.IsFalse(Directory.Exists(dir.File("r")), "no report folder after a failed start");
    }

    [TestMethod]
    [DataRow("--batch", "0")]
    [DataRow("--seq", "-3")]
    [DataRow("--min-top1", "1.5")]
    [DataRow("--atol", "NaN")]
    [DataRow("--device", "tpu")]
    [DataRow("--padding", "middle")]
    [DataRow("--decode-tokens", "-1")]
    [DataRow("--prompt-tokens", "0")]
    [DataRow("--decode-runs", "0")]
    [DataRow("--graph-optimization", "max")]
    public void Validate_InvalidOptionValue_ExitsTwoNamingTheOption(string option, string value)
    {
        using var dir = new TempDir();
        string m = TinyLm(dir.File("m.onnx"));
        var (code, _, err) = CliHarness.Run("validate", "--merged", m, "--unmerged", m, option, value, "--report", dir.File("r"));
        Assert.AreEqual(2, code, err);
        StringAssert.Contains(err, option);
        Assert.IsFalse(Directory.Exists(dir.File("r")));
    }

    [TestMethod]
    public void Validate_DecodeTokensOnAGraphWithoutKeyValueCache_ExitsTwoNamingTheFileAndOption_WritesNothing()
    {
        using var dir = new TempDir();
        string merged = TinyLm(dir.File("merged.onnx"));
        string unmerged = TinyLm(dir.File("unmerged.onnx"));

        var (code, _, err) = CliHarness.Run("validate", "--merged", merged, "--unmerged", unmerged, "--device", "cpu",
            "--decode-tokens", "4", "--runs", "0", "--seq", "4", "--report", dir.File("r"));

        Assert.AreEqual(2, code, err);
        Assert.AreEqual(1, err.Trim().Split('\n').Length, err);
        StringAssert.Contains(err, merged);
        StringAssert.Contains(err, "--decode-tokens");
        StringAssert.Contains(err, "without a key/value cache");
        Assert.IsFalse(Directory.Exists(dir.File("r")), "no report folder");
    }

    [TestMethod]
    public void Validate_ExistingReportWithoutForce_ExitsTwoAndKeepsIt()
    {
        using var dir = new TempDir();
        string m = TinyLm(dir.File("m.onnx"));
        string report = dir.File("r");
        Directory.CreateDirectory(report);
        File.WriteAllText(Path.Combine(report, "validation.json"), "{\"old\":true}");

        var (code, _, err) = CliHarness.Run("validate", "--merged", m, "--unmerged", m, "--device", "cpu", "--runs", "0", "--seq", "4", "--report", report);

        Assert.AreEqual(2, code, err);
        StringAssert.Contains(err, "--force");
        Assert.AreEqual("{\"old\":true}", File.ReadAllText(Path.Combine(report, "validation.json")));
        Assert.AreEqual(0, CliHarness.Run("validate", "--merged", m, "--unmerged", m, "--device", "cpu", "--runs", "0", "--seq", "4", "--report", report, "--force").ExitCode);
    }

    [TestMethod]
    public void Validate_MergedModelNotOnnx_ExitsTwo()
    {
        using var dir = new TempDir();
        string notOnnx = dir.File("model.onnx");
        File.WriteAllText(notOnnx, "this is a text file");
        string m = TinyLm(dir.File("m.onnx"));
        var (code, _, err) = CliHarness.Run("validate", "--merged", notOnnx, "--unmerged", m, "--device", "cpu", "--report", dir.File("r"));
        Assert.AreEqual(2, code, err);
        StringAssert.Contains(err, "model.onnx");
    }
}
