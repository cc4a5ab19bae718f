using System.Text.Json;
using System.Text.Json.Nodes;
using OnnxLora.MergeExport.Internals;

namespace OnnxLora.MergeExport.Tests;

/// <summary><c>compare</c> and <c>validate --baseline</c> through the command line.</summary>
[TestClass]
public sealed class CompareCommandTests
{
    /// <summary>One validation report of the tiny LM (merged = unmerged = base), read as a JSON tree. Runs once per test class.</summary>
    private static readonly Lazy<string> Measured = new(() =>
    {
        using var dir = new TempDir();
        string model = ValidateCommandTests.TinyLm(dir.File("m.onnx"));
        var (code, _, err) = CliHarness.Run("validate", "--merged", model, "--unmerged", model, "--base", model,
            "--device", "cpu", "--threads", "1", "--runs", "10", "--warmup", "1", "--seq", "8", "--report", dir.File("report"));
        Assert.AreEqual(0, code, err);
        return File.ReadAllText(dir.File("report/validation.json"));
    });

    /// <summary>Writes the measured report, changed by <paramref name="edit"/>, as <paramref name="name"/>.</summary>
    private static string Report(TempDir dir, string name, Action<JsonObject>? edit = null)
    {
        var root = JsonNode.Parse(Measured.Value)!.AsObject();
        edit?.Invoke(root);
        string path = dir.File(name);
        File.WriteAllText(path, root.ToJsonString());
        return path;
    }

    /// <summary>
    /// Replaces the samples with a fixed spread around <paramref name="ms"/> (1% steps), so verdicts do not depend on this
    /// machine: the merged model's around <paramref name="mergedMs"/> (default <paramref name="ms"/>), the others' around
    /// <paramref name="ms"/>. Per round, merged / base is then mergedMs / ms.
    /// </summary>
    private static Action<JsonObject> Samples(double ms, double? mergedMs = null) => root =>
    {
        foreach (var model in root["latency"]!["models"]!.AsArray())
        {
            double center = model!["role"]!.GetValue<string>() == "merged" ? mergedMs ?? ms : ms;
            model["samplesMs"] = new JsonArray([.. Enumerable.Range(0, 40).Select(i => (JsonNode?)JsonValue.Create(center * (1 + 0.01 * (i % 5))))]);
        }
    };

    /// <summary>Replaces only the merged model's samples, with <paramref name="ms"/> in every round.</summary>
    private static Action<JsonObject> MergedSamples(double ms) => root =>
    {
        var merged = root["latency"]!["models"]!.AsArray().Single(m => m!["role"]!.GetValue<string>() == "merged")!;
        merged["samplesMs"] = new JsonArray([.. merged["samplesMs"]!.AsArray().Select(_ => (JsonNode?)JsonValue.Create(ms))]);
    };

    private static string[] Lines(string text) => text.Split('\n', StringSplitOptions.RemoveEmptyEntries);

    [TestMethod]
    public void Compare_ReportWithItself_PassesAndWritesMarkdownAndHtml()
    {
        using var dir = new TempDir();
        string a = Report(dir, "a.json");

        var (code, stdout, err) = CliHarness.Run("compare", a, a, "--out", dir.File("cmp"), "--max-regression", "5%");

        Assert.AreEqual(0, code, err);
        StringAssert.Contains(stdout, "PASSED; report: ");
        StringAssert.Contains(stdout, $"merged    {a} (2): median ");
        StringAssert.Contains(stdout, "ratio 1.000");
        string md = File.ReadAllText(dir.File("cmp/compare.md"));
        StringAssert.StartsWith(md, "## OnnxLora latency comparison: ✅ no merged model is slower than the baseline beyond 5%");
        StringAssert.Contains(md, $"| merged | {a} (2) | 10 |");
        Assert.IsTrue(File.Exists(dir.File("cmp/compare.html")));
    }

    [TestMethod]
    public void Compare_PlantedTwentyPercentSlowdown_ExitsOneNamingTheReport()
    {
        using var dir = new TempDir();
        string a = Report(dir, "a.json", Samples(2.0));
        string b = Report(dir, "b.json", Samples(2.0, mergedMs: 2.4));

        var (code, stdout, err) = CliHarness.Run("compare", a, b, "--out", dir.File("cmp"), "--max-regression", "5");

        Assert.AreEqual(1, code, stdout + err);
        StringAssert.Contains(stdout, $"merged    {b}: median 2.448 ms");
        StringAssert.Contains(stdout, "ratio 1.200 (95% CI 1.1");
        StringAssert.Contains(stdout, ", relative to base 1.200 (95% CI 1.200–1.200): regression");
        StringAssert.StartsWith(err, $"gate failed: {b}: merged median 2.448 ms is 20.0% slower than the baseline relative to the base model (drift-corrected)");
        StringAssert.Contains(stdout, "REGRESSION; report: ");
    }

    [TestMethod]
    public void Compare_WholeMachineSlower_IsNoRegressionRelativeToTheBaseModel()
    {
        using var dir = new TempDir();
        string a = Report(dir, "a.json", Samples(2.0));
        string b = Report(dir, "b.json", Samples(2.4));

        var (code, stdout, err) = CliHarness.Run("compare", a, b, "--out", dir.File("cmp"), "--max-regression", "5%");

        Assert.AreEqual(0, code, stdout + err);
        StringAssert.Contains(stdout, $"merged    {b}: median 2.448 ms (95% CI 2.424–2.472), ratio 1.200 (95% CI 1.188–1.212), relative to base 1.000 (95% CI 1.000–1.000): no-significant-change");
        StringAssert.Contains(stdout, $"base      {b}: median 2.448 ms (95% CI 2.424–2.472), ratio 1.200 (95% CI 1.188–1.212): regression");
        StringAssert.Contains(stdout, "PASSED; report: ");
    }

    [TestMethod]
    public void Compare_Json_PrintsOneObjectWithTheFailedGateAndEveryModel()
    {
        using var dir = new TempDir();
        string a = Report(dir, "a.json", Samples(2.0));
        string b = Report(dir, "b.json", Samples(2.0, mergedMs: 2.4));
        string c = Report(dir, "c.json", Samples(2.0, mergedMs: 1.8));

        var (code, stdout, _) = CliHarness.Run("compare", a, b, c, "--out", dir.File("cmp"), "--max-regression", "5%", "--json");

        Assert.AreEqual(1, code);
        using var doc = JsonDocument.Parse(stdout);
        var root = doc.RootElement;
        Assert.AreEqual("gate-failed", root.GetProperty("status").GetString());
        var gate = root.GetProperty("failedGates").EnumerateArray().Single();
        Assert.AreEqual(("max-regression", b, 1.05), (gate.GetProperty("gate").GetString(), gate.GetProperty("output").GetString(), gate.GetProperty("limit").GetDouble()));
        Assert.IsGreaterThan(1.05, gate.GetProperty("value").GetDouble());
        var models = root.GetProperty("details").GetProperty("models").EnumerateArray().ToList();
        Assert.HasCount(9, models, "three roles in three reports");
        CollectionAssert.AreEqual(new[] { "baseline", "regression", "faster" },
            models.Where(m => m.GetProperty("role").GetString() == "merged").Select(m => m.GetProperty("verdict").GetString()).ToArray());
        Assert.IsTrue(File.Exists(root.GetProperty("outputs").GetProperty("compareHtml").GetString()));
    }

    [TestMethod]
    public void Compare_ReportFromAnotherMachine_ExitsTwoNamingTheFileAndTheField()
    {
        using var dir = new TempDir();
        string a = Report(dir, "a.json");
        string b = Report(dir, "b.json", r => r["machine"]!["cpuModel"] = "Some Other CPU");

        var (code, stdout, err) = CliHarness.Run("compare", a, b, "--out", dir.File("cmp"));

        Assert.AreEqual(2, code);
        Assert.HasCount(1, Lines(err));
        StringAssert.StartsWith(err, $"merge-export compare: error: {b}: field machine.cpuModel: found \"Some Other CPU\", expected \"");
        StringAssert.Contains(err, $"as in the baseline {a}");
        Assert.AreEqual("", stdout);
        Assert.IsFalse(Directory.Exists(dir.File("cmp")), "nothing is written");
    }

    [TestMethod]
    public void Compare_OtherExecutionProvider_ExitsTwoNamingTheField()
    {
        using var dir = new TempDir();
        string a = Report(dir, "a.json");
        string b = Report(dir, "b.json", r => r["provider"]!["used"] = "CUDAExecutionProvider");

        var (code, _, err) = CliHarness.Run("compare", a, b, "--out", dir.File("cmp"));

        Assert.AreEqual(2, code);
        StringAssert.StartsWith(err, $"merge-export compare: error: {b}: field provider.used: found \"CUDAExecutionProvider\", expected \"CPUExecutionProvider\"");
    }

    [TestMethod]
    public void Compare_AllowDifferentMachines_ComparesAndSaysSo()
    {
        using var dir = new TempDir();
        string a = Report(dir, "a.json");
        string b = Report(dir, "b.json", r => r["machine"]!["cpuModel"] = "Some Other CPU");

        var (code, stdout, err) = CliHarness.Run("compare", a, b, "--out", dir.File("cmp"), "--allow-different-machines");

        Assert.AreEqual(0, code, err);
        StringAssert.Contains(stdout, $"{b} differs from the baseline in machine.cpuModel: Some Other CPU");
        StringAssert.Contains(stdout, "COMPARED; report: ");
        string md = File.ReadAllText(dir.File("cmp/compare.md"));
        StringAssert.Contains(md, "> ⚠️ These reports come from different machines");
        StringAssert.Contains(md, "| `machine.cpuModel` | machine |");
    }

    [TestMethod]
    public void Compare_TruncatedReport_ExitsTwoInOneLineNamingFileAndField()
    {
        using var dir = new TempDir();
        string a = Report(dir, "a.json");
        string text = File.ReadAllText(a);
        string b = dir.File("b.json");
        File.WriteAllText(b, text[..(text.IndexOf("\"samplesMs\"", StringComparison.Ordinal) + 20)]);

        var (code, stdout, err) = CliHarness.Run("compare", a, b, "--out", dir.File("cmp"), "--json");

        Assert.AreEqual(2, code);
        Assert.HasCount(1, Lines(err));
        StringAssert.StartsWith(err, $"merge-export compare: error: {b}: field latency.models[0].samplesMs: found JSON that is truncated or malformed at line ");
        using var doc = JsonDocument.Parse(stdout);
        Assert.AreEqual("bad-input", doc.RootElement.GetProperty("errorKind").GetString());
    }

    [TestMethod]
    public void Compare_ForeignJsonOrOtherSchemaVersion_ExitsTwoNamingTheSchemaField()
    {
        using var dir = new TempDir();
        string a = Report(dir, "a.json");
        string foreign = dir.File("package.json");
        File.WriteAllText(foreign, "{\"name\": \"x\", \"version\": \"1.0.0\"}");
        string old = Report(dir, "old.json", r => r["schema"] = "onnxlora.validation/1");

        var (code1, _, err1) = CliHarness.Run("compare", a, foreign, "--out", dir.File("cmp"));
        var (code2, _, err2) = CliHarness.Run("compare", old, a, "--out", dir.File("cmp"));

        Assert.AreEqual((2, 2), (code1, code2));
        StringAssert.StartsWith(err1, $"merge-export compare: error: {foreign}: field schema: found none, expected \"onnxlora.validation/3\"");
        StringAssert.StartsWith(err2, $"merge-export compare: error: {old}: field schema: found \"onnxlora.validation/1\", expected \"onnxlora.validation/3\"");
        Assert.HasCount(1, Lines(err2));
    }

    [TestMethod]
    public void Compare_UsageErrors_ExitTwo()
    {
        using var dir = new TempDir();
        string a = Report(dir, "a.json");

        var (one, _, oneErr) = CliHarness.Run("compare", a);
        var (bad, _, badErr) = CliHarness.Run("compare", a, a, "--max-regression", "fast");
        var (negative, _, negativeErr) = CliHarness.Run("compare", a, a, "--max-regression", "-5%");
        var (missing, _, missingErr) = CliHarness.Run("compare", a, dir.File("none.json"), "--out", dir.File("cmp"));

        Assert.AreEqual((2, 2, 2, 2), (one, bad, negative, missing));
        StringAssert.Contains(oneErr, "compare needs at least two validation reports");
        StringAssert.Contains(badErr, "--max-regression must be a percentage >= 0 such as 5% (or 5); got 'fast'.");
        StringAssert.Contains(negativeErr, "got '-5%'");
        StringAssert.Contains(missingErr, "none.json: validation report not found.");
    }

    [TestMethod]
    public void Validate_WithBaseline_PrintsTheComparisonAndGates()
    {
        using var dir = new TempDir();
        string model = ValidateCommandTests.TinyLm(dir.File("m.onnx"));
        // The same tiny models time alike in every run; a baseline whose merged model took a second (a nanosecond) per run
        // makes this run's merged model far faster (slower), relative to the base model too.
        string slow = Report(dir, "slow.json", MergedSamples(1e3));
        string fast = Report(dir, "fast.json", MergedSamples(1e-6));
        string[] Args(string baseline, string report) =>
        [
            "validate", "--merged", model, "--unmerged", model, "--base", model, "--device", "cpu", "--threads", "1", "--runs", "10",
            "--warmup", "1", "--seq", "8", "--report", dir.File(report), "--baseline", baseline, "--max-regression", "5%",
        ];

        var (passCode, passOut, passErr) = CliHarness.Run(Args(slow, "r1"));
        var (failCode, failOut, failErr) = CliHarness.Run([.. Args(fast, "r2"), "--json"]);

        Assert.AreEqual(0, passCode, passErr);
        StringAssert.Contains(passOut, "vs baseline merged    median ");
        StringAssert.Contains(passOut, "), faster");
        Assert.AreEqual(1, failCode, failErr);
        using var doc = JsonDocument.Parse(failOut);
        var gate = doc.RootElement.GetProperty("failedGates").EnumerateArray().Single();
        Assert.AreEqual("max-regression", gate.GetProperty("gate").GetString());
        Assert.AreEqual("regression", doc.RootElement.GetProperty("details").GetProperty("baseline").GetProperty("merged").GetProperty("verdict").GetString());
        var written = JsonNode.Parse(File.ReadAllText(dir.File("r2/validation.json")))!;
        Assert.AreEqual(fast, written["baseline"]!["path"]!.GetValue<string>());
        Assert.AreEqual(0.05, written["options"]!["maxRegression"]!.GetValue<double>());
    }

    [TestMethod]
    public void Validate_MaxRegressionWithoutBaseline_ExitsTwo()
    {
        using var dir = new TempDir();
        string model = ValidateCommandTests.TinyLm(dir.File("m.onnx"));

        var (code, _, err) = CliHarness.Run("validate", "--merged", model, "--unmerged", model, "--device", "cpu", "--runs", "2",
            "--seq", "8", "--report", dir.File("r"), "--max-regression", "5%");

        Assert.AreEqual(2, code);
        StringAssert.Contains(err, "option MaxRegression: found no baseline report, expected a baseline report (--baseline)");
    }

    [TestMethod]
    [DataRow("5%", 0.05)]
    [DataRow("5", 0.05)]
    [DataRow(" 2.5 % ", 0.025)]
    [DataRow("0", 0.0)]
    public void PercentOption_ReadsPercentagesAsFractions(string text, double expected)
    {
        Assert.IsTrue(PercentOption.TryParse(text, out double fraction));
        Assert.AreEqual(expected, fraction, 1e-15);
    }

    [TestMethod]
    [DataRow("-1%")]
    [DataRow("five")]
    [DataRow("NaN")]
    [DataRow("Infinity")]
    [DataRow("%")]
    public void PercentOption_RejectsWhatIsNotAPercentage(string text) => Assert.IsFalse(PercentOption.TryParse(text, out _));
}
