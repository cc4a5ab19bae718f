using OnnxLora.MergeExport.Build.Internals;

namespace OnnxLora.MergeExport.Build.Tests;

[TestClass]
public sealed class ExportSettingsTests
{
    private static readonly ExportSettings Sample = new(
        "adapters/x", "/p/adapters/x", "/p/base", "/p/out/x.onnx", "/p/out/x.onnx.report",
        Validate: true, Atol: "1e-4", Rtol: null, MinTop1: null, MaxLatencyRatio: "1.05");

    [TestMethod]
    public void ToolArguments_PassesPathsJsonAndOnlyTheGatesThatAreSet()
    {
        string[] expected =
        [
            "run", "--model", "/p/base", "--adapter", "/p/adapters/x", "--out", "/w/out", "--json", "--force",
            "--atol", "1e-4", "--max-latency-ratio", "1.05",
        ];

        CollectionAssert.AreEqual(expected, Sample.ToolArguments("/w/out").ToArray());
    }

    [TestMethod]
    public void ToolArguments_WithABaseline_PassItAndTheRegressionGate()
    {
        var settings = Sample with { BaselineReport = "/p/baselines/x.json", MaxRegression = "5%", AllowDifferentMachines = true };

        string[] args = [.. settings.ToolArguments("/w/out")];

        CollectionAssert.AreEqual(new[] { "--baseline", "/p/baselines/x.json", "--max-regression", "5%", "--allow-different-machines" }, args[^5..]);
        CollectionAssert.DoesNotContain((settings with { Validate = false }).ToolArguments("/w/out").ToArray(), "--baseline", "no validation, nothing to compare");
        CollectionAssert.DoesNotContain((Sample with { MaxRegression = "5%" }).ToolArguments("/w/out").ToArray(), "--max-regression", "no baseline file, no gate");
    }

    [TestMethod]
    public void ToolArguments_WithSessionOptions_PassesGraphOptimizationAndNoCpuMemArena()
    {
        var settings = Sample with { GraphOptimization = "none", CpuMemArena = false };

        string[] args = [.. settings.ToolArguments("/w/out")];

        CollectionAssert.AreEqual(new[] { "--max-latency-ratio", "1.05", "--graph-optimization", "none", "--no-cpu-mem-arena" }, args[^5..]);
        CollectionAssert.DoesNotContain((Sample with { GraphOptimization = "basic" }).ToolArguments("/w/out").ToArray(), "--no-cpu-mem-arena", "the arena is on unless CpuMemArena is false");
    }

    [TestMethod]
    [DataRow("5%", "5%")]
    [DataRow(" 2.5 % ", "2.5 %")]
    [DataRow("5", "5")]
    [DataRow("", null)]
    public void TryParsePercent_AcceptsPercentagesKeepingTheText(string text, string? expected)
    {
        Assert.IsTrue(ExportSettings.TryParsePercent(text, out string? value));
        Assert.AreEqual(expected, value);
    }

    [TestMethod]
    [DataRow("-5%")]
    [DataRow("five")]
    [DataRow("5%%")]
    [DataRow("NaN")]
    public void TryParsePercent_RejectsWhatIsNotAPercentage(string text) => Assert.IsFalse(ExportSettings.TryParsePercent(text, out _));

    [TestMethod]
    public void ToolArguments_WithValidateFalse_AddsNoValidate()
    {
        IReadOnlyList<string> args = (Sample with { Validate = false }).ToolArguments("/w/out");

        CollectionAssert.Contains(args.ToArray(), "--no-validate");
    }

    [TestMethod]
    public void StampText_ChangesWithEachSetting()
    {
        string stamp = Sample.StampText("merge-export");
        ExportSettings[] changed =
        [
            Sample with { MaxLatencyRatio = "1.10" },
            Sample with { Atol = null },
            Sample with { Rtol = "1e-3" },
            Sample with { MinTop1 = "0.99" },
            Sample with { Validate = false },
            Sample with { ModelPath = "/p/base2" },
            Sample with { OutputPath = "/p/out/y.onnx" },
            Sample with { ReportDirectory = "/p/reports" },
            Sample with { BaselineReport = "/p/baselines/x.json" },
            Sample with { MaxRegression = "5%" },
            Sample with { AllowDifferentMachines = true },
            Sample with { GraphOptimization = "none" },
            Sample with { GraphOptimization = "basic" },
            Sample with { CpuMemArena = false },
        ];

        foreach (ExportSettings settings in changed)
        {
            Assert.AreNotEqual(stamp, settings.StampText("merge-export"), settings.ToString());
        }
        Assert.AreNotEqual(stamp, Sample.StampText("/tools/merge-export.dll"));
        Assert.AreEqual(stamp, Sample.StampText("merge-export"));
    }

    [TestMethod]
    public void StampText_WithoutSessionOptions_IsTheStampWrittenBeforeTheyExisted()
    {
        // Items that set neither GraphOptimization nor CpuMemArena=false keep their stamp (and are not re-run).
        const string before =
            "tool=merge-export\nmodel=/p/base\nadapter=/p/adapters/x\noutput=/p/out/x.onnx\nreports=/p/out/x.onnx.report\n"
            + "validate=true\natol=1e-4\nrtol=\nmin-top1=\nmax-latency-ratio=1.05\nbaseline=\nmax-regression=\n"
            + "allow-different-machines=false\nonnx-adapter=\nadapters-model=\n";

        Assert.AreEqual(before, Sample.StampText("merge-export"));
        Assert.AreEqual(before, (Sample with { CpuMemArena = true }).StampText("merge-export"));
    }

    [TestMethod]
    [DataRow("all", "all")]
    [DataRow(" none ", "none")]
    [DataRow("extended", "extended")]
    [DataRow("basic", "basic")]
    [DataRow("", null)]
    public void TryParseGraphOptimization_AcceptsTheToolsWords(string text, string? expected)
    {
        Assert.IsTrue(ExportSettings.TryParseGraphOptimization(text, out string? value));
        Assert.AreEqual(expected, value);
    }

    [TestMethod]
    [DataRow("None")]
    [DataRow("ALL")]
    [DataRow("off")]
    [DataRow("0")]
    [DataRow("ORT_DISABLE_ALL")]
    public void TryParseGraphOptimization_RejectsOtherWords(string text) => Assert.IsFalse(ExportSettings.TryParseGraphOptimization(text, out _));

    [TestMethod]
    public void GraphOptimizationLevels_AreTheValidatorsLevels()
    {
        // merge-export's --graph-optimization words are the lowercase names of Validate's GraphOptimization.
        string[] levels = [.. Enum.GetNames<OnnxLora.Validate.GraphOptimization>().Select(name => name.ToLowerInvariant())];

        CollectionAssert.AreEquivalent(levels, ExportSettings.GraphOptimizationLevels.ToArray());
    }

    [TestMethod]
    [DataRow("", true, true)]
    [DataRow("", false, false)]
    [DataRow(" false ", true, false)]
    [DataRow("TRUE", false, true)]
    public void TryParseBoolean_ReadsBooleansAndTheDefaultWhenEmpty(string text, bool whenEmpty, bool expected)
    {
        Assert.IsTrue(ExportSettings.TryParseBoolean(text, whenEmpty, out bool value));
        Assert.AreEqual(expected, value);
    }

    [TestMethod]
    [DataRow("1e-4", "1e-4")]
    [DataRow(" 0.5 ", "0.5")]
    [DataRow("0", "0")]
    [DataRow("", null)]
    public void TryParseGate_AcceptsFiniteNumbersInRange(string text, string? expected)
    {
        Assert.IsTrue(ExportSettings.TryParseGate(text, 0, double.MaxValue, false, out string? value));
        Assert.AreEqual(expected, value);
    }

    [TestMethod]
    [DataRow("abc")]
    [DataRow("-1")]
    [DataRow("NaN")]
    [DataRow("Infinity")]
    [DataRow("1,05")]
    public void TryParseGate_RejectsNonNumbersAndNegatives(string text)
    {
        Assert.IsFalse(ExportSettings.TryParseGate(text, 0, double.MaxValue, false, out _));
    }

    [TestMethod]
    public void TryParseGate_HonoursBounds()
    {
        Assert.IsFalse(ExportSettings.TryParseGate("1.5", 0, 1, false, out _), "min-top1 above 1");
        Assert.IsTrue(ExportSettings.TryParseGate("1", 0, 1, false, out _), "min-top1 of exactly 1");
        Assert.IsFalse(ExportSettings.TryParseGate("0", 0, double.MaxValue, true, out _), "latency ratio 0 (exclusive minimum)");
    }

    [TestMethod]
    [DataRow("", true)]
    [DataRow("true", true)]
    [DataRow("False", false)]
    public void TryParseValidate_ReadsBooleansAndDefaultsToTrue(string text, bool expected)
    {
        Assert.IsTrue(ExportSettings.TryParseValidate(text, out bool value));
        Assert.AreEqual(expected, value);
    }

    [TestMethod]
    public void TryParseValidate_RejectsOtherText()
    {
        Assert.IsFalse(ExportSettings.TryParseValidate("yes", out _));
    }
}
