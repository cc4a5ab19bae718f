using System.Text.Json.Nodes;

namespace OnnxLora.Validate.Tests;

[TestClass]
public sealed class ValidatorBaselineTests
{
    private static readonly ValidationOptions Timed = TestFiles.Cpu with { Runs = 12, Warmup = 1 };

    /// <summary>Runs the three tiny models once and writes the report as the baseline; <paramref name="edit"/> changes its JSON first.</summary>
    private static (ValidationRequest Request, string Baseline) Baseline(TestFiles f, Action<JsonObject>? edit = null)
    {
        var request = new ValidationRequest(f.Merged(), f.Unmerged()) { BasePath = f.Base() };
        var root = JsonNode.Parse(ReportWriter.ToJson(Validator.Run(request, Timed)))!.AsObject();
        edit?.Invoke(root);
        string path = f.File("baseline.json");
        File.WriteAllText(path, root.ToJsonString());
        return (request, path);
    }

    [TestMethod]
    public void Run_WithBaseline_ComparesEveryRoleAndEnablesTheGate()
    {
        using var f = new TestFiles();
        var (request, baseline) = Baseline(f);

        var report = Validator.Run(request, Timed with { BaselineReport = baseline, MaxRegression = 0.05 });

        var b = report.Baseline!;
        Assert.AreEqual(baseline, b.Path);
        CollectionAssert.AreEqual(new[] { ModelRole.Merged, ModelRole.Unmerged, ModelRole.Base }, b.Models.Select(m => m.Role).ToArray());
        Assert.IsTrue(b.Models.All(m => m.SameModel), "the same files: the same content hashes");
        Assert.IsTrue(b.Models.All(m => m.Current.Samples == 12 && m.Baseline.Samples == 12));
        Assert.IsTrue(b.Models.All(m => m.Ratio.Low <= m.Ratio.Ratio && m.Ratio.Ratio <= m.Ratio.High));
        Assert.AreEqual((0.05, 0.95, 2000, 1), (b.MaxRegression, b.Confidence, b.Resamples, b.Seed));
        Assert.IsFalse(b.Differences.Any(d => d.Kind != DifferenceKind.Software));
        var gate = report.Gates.Single(g => g.Gate == "max-regression");
        Assert.IsTrue(gate.Enabled);
        StringAssert.Contains(gate.Limit, "≤ 1.05");
        StringAssert.StartsWith(gate.Detail, "median ");
        StringAssert.Contains(gate.Detail, "; relative to the base model (drift-corrected, judged) ");
        Assert.IsNotNull(b.Models[0].RelativeToBase);
        CollectionAssert.AreEqual(new[] { "finite", "tolerance", "min-top1", "decode-tokens", "max-latency-ratio", "max-regression", "max-metric-delta" }, report.Gates.Select(g => g.Gate).ToArray());
    }

    [TestMethod]
    public void Run_BaselineFarFaster_FailsTheRegressionGate()
    {
        using var f = new TestFiles();
        // A baseline whose merged runs took a nanosecond: any real run is far slower.
        var (request, baseline) = Baseline(f, root =>
        {
            var samples = root["latency"]!["models"]![0]!["samplesMs"]!.AsArray();
            for (int i = 0; i < samples.Count; i++)
            {
                samples[i] = 1e-6;
            }
        });

        var report = Validator.Run(request, Timed with { BaselineReport = baseline, MaxRegression = 0.05 });

        Assert.AreEqual(ValidationStatus.GateFailed, report.Status);
        var failure = report.Failures.Single();
        Assert.AreEqual("max-regression", failure.Gate);
        Assert.AreEqual(1.05, failure.Limit);
        var merged = report.Baseline!.Models[0];
        Assert.IsNotNull(merged.RelativeToBase, "the same base model with the same ONNX Runtime: drift-corrected");
        Assert.AreEqual(merged.RelativeToBase.Low, failure.Value);
        Assert.IsNull(report.Baseline.Models[2].RelativeToBase, "the base model is the control, not compared with itself");
        StringAssert.Contains(failure.Message, baseline);
        Assert.AreEqual(LatencyVerdict.Regression, report.Baseline.Models[0].Verdict);
    }

    [TestMethod]
    public void Run_BaselineWithoutGate_ReportsButNeverFails()
    {
        using var f = new TestFiles();
        var (request, baseline) = Baseline(f, root => root["latency"]!["models"]![0]!["samplesMs"]!.AsArray().ReplaceWith(new JsonArray(1e-6, 1e-6)));

        var report = Validator.Run(request, Timed with { BaselineReport = baseline });

        Assert.AreEqual(ValidationStatus.Pass, report.Status);
        Assert.AreEqual(LatencyVerdict.Slower, report.Baseline!.Models[0].Verdict);
        Assert.IsFalse(report.Gates.Single(g => g.Gate == "max-regression").Enabled);
    }

    [TestMethod]
    public void Run_BaselineFromAnotherMachine_IsRefusedBeforeRunningNamingTheField()
    {
        using var f = new TestFiles();
        var (request, baseline) = Baseline(f, root => root["machine"]!["cpuModel"] = "Some Other CPU");

        var e = BadInput.Throws(() => Validator.Run(request, Timed with { BaselineReport = baseline, MaxRegression = 0.05 }));

        StringAssert.StartsWith(e.Message, "this run: field machine.cpuModel: found \"");
        StringAssert.Contains(e.Message, $"expected \"Some Other CPU\" as in the baseline {baseline}");
    }

    [TestMethod]
    public void Run_BaselineWithOtherSettings_IsRefusedNamingTheField()
    {
        using var f = new TestFiles();
        var (request, baseline) = Baseline(f);

        var e = BadInput.Throws(() => Validator.Run(request, Timed with { BaselineReport = baseline, IntraOpThreads = 2 }));

        StringAssert.StartsWith(e.Message, "this run: field provider.session.intraOpThreads: found \"2\", expected \"1\"");
    }

    [TestMethod]
    public void Run_BaselineFromAnotherMachine_Allowed_ListsTheDifference()
    {
        using var f = new TestFiles();
        var (request, baseline) = Baseline(f, root => root["machine"]!["cpuModel"] = "Some Other CPU");

        var report = Validator.Run(request, Timed with { BaselineReport = baseline, AllowDifferentMachines = true });

        var d = report.Baseline!.Differences.Single(x => x.Kind != DifferenceKind.Software);
        Assert.AreEqual(("machine.cpuModel", "Some Other CPU"), (d.Field, d.Baseline));
        StringAssert.Contains(ReportWriter.ToMarkdown(report), "- ⚠️ `machine.cpuModel`:");
    }

    [TestMethod]
    public void Run_RegressionOptionsThatCannotWork_AreOptionErrors()
    {
        using var f = new TestFiles();
        var request = new ValidationRequest(f.Merged(), f.Unmerged());

        StringAssert.Contains(BadInput.Throws(() => Validator.Run(request, Timed with { MaxRegression = 0.05 })).Message, "option MaxRegression: found no baseline report");
        StringAssert.Contains(BadInput.Throws(() => Validator.Run(request, TestFiles.Cpu with { BaselineReport = "x.json" })).Message, "option BaselineReport: found latency not measured");
        StringAssert.Contains(BadInput.Throws(() => Validator.Run(request, Timed with { BaselineReport = f.File("none.json") })).Message, "validation report not found");
    }
}
