namespace OnnxLora.MergeExport.Build.Tests;

/// <summary>BaselineReport and MaxRegression through <c>dotnet build</c> with the fake tool.</summary>
[TestClass]
public sealed class RegressionGateTests
{
    private const string WithBaseline = ConsumerProject.DefaultItem + " BaselineReport=\"baselines/x.json\" MaxRegression=\"5%\"";

    private static string WriteBaseline(ConsumerProject project, string text)
    {
        string path = Path.Combine(project.Root, "baselines", "x.json");
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, text);
        return path;
    }

    [TestMethod]
    public void Build_WithABaseline_PassesItAndTheGateToTheTool_AndRerunsWhenTheBaselineChanges()
    {
        using var project = ConsumerProject.Create(WithBaseline);
        string baseline = WriteBaseline(project, "{\"run\": 1}");

        BuildOutcome first = project.Build();
        BuildOutcome unchanged = project.Build();
        WriteBaseline(project, "{\"run\": 2}");
        File.SetLastWriteTimeUtc(baseline, DateTime.UtcNow.AddMinutes(1));
        BuildOutcome newBaseline = project.Build();

        Assert.IsTrue(first.Succeeded, first.Shown);
        string[] args = project.Invocations[0].Split('\t');
        Assert.AreEqual(baseline, args[Array.IndexOf(args, "--baseline") + 1]);
        Assert.AreEqual("5%", args[Array.IndexOf(args, "--max-regression") + 1]);
        CollectionAssert.DoesNotContain(args, "--allow-different-machines");
        Assert.IsTrue(unchanged.Succeeded, unchanged.Shown);
        Assert.IsTrue(newBaseline.Succeeded, newBaseline.Shown);
        Assert.HasCount(2, project.Invocations, "skipped while nothing changed, re-run for a new baseline");
    }

    [TestMethod]
    public void Build_BaselineNotThereYet_WarnsOlmx009AndRunsWithoutIt()
    {
        using var project = ConsumerProject.Create(WithBaseline + " AllowDifferentMachines=\"true\"");

        BuildOutcome build = project.Build();

        Assert.IsTrue(build.Succeeded, build.Shown);
        StringAssert.Contains(build.Log, "warning OLMX009: LoRA adapter 'adapters/x': BaselineReport 'baselines/x.json' not found (looked for ");
        StringAssert.Contains(build.Log, "the max-regression gate is skipped in this build.");
        string[] args = Assert.ContainsSingle(project.Invocations).Split('\t');
        CollectionAssert.DoesNotContain(args, "--baseline");
        CollectionAssert.DoesNotContain(args, "--max-regression");
    }

    [TestMethod]
    public void Build_BadRegressionMetadata_FailsWithOlmx006()
    {
        using var project = ConsumerProject.Create(ConsumerProject.DefaultItem + " MaxRegression=\"5%\" AllowDifferentMachines=\"maybe\"");

        BuildOutcome build = project.Build();

        Assert.IsFalse(build.Succeeded, build.Shown);
        StringAssert.Contains(build.Log, "error OLMX006: LoRA adapter 'adapters/x': metadata MaxRegression is set but BaselineReport is not");
        StringAssert.Contains(build.Log, "error OLMX006: LoRA adapter 'adapters/x': metadata AllowDifferentMachines: found 'maybe', expected true or false.");
        Assert.IsEmpty(project.Invocations);

        project.SetItem(WithBaseline.Replace("5%", "five percent", StringComparison.Ordinal));
        BuildOutcome badPercent = project.Build();

        Assert.IsFalse(badPercent.Succeeded, badPercent.Shown);
        StringAssert.Contains(badPercent.Log, "metadata MaxRegression: found 'five percent', expected a percentage >= 0 (e.g. 5%).");
    }

    [TestMethod]
    public void Build_WhenTheRegressionGateFails_FailsWithOlmx001AndKeepsTheLastReportBesideTheOutput()
    {
        using var project = ConsumerProject.Create(WithBaseline);
        string baseline = WriteBaseline(project, "{}");
        project.SetFakeMode("regression");

        BuildOutcome build = project.Build();

        Assert.IsFalse(build.Succeeded, build.Shown);
        StringAssert.Contains(build.Log,
            $"error OLMX001: LoRA adapter 'adapters/x': validation gate max-regression failed: 1.08 > 1.05 (merged latency vs baseline {baseline}: ratio 1.12 (95% CI 1.08–1.16)) (see out/x.onnx.report/validation.md)");
        Assert.IsFalse(File.Exists(project.OutputFile), "a model that failed its gates is not copied");
        Assert.IsTrue(File.Exists(Path.Combine(project.ReportFolder, "validation.json")), "the run's report is kept beside the output");
        Assert.AreEqual("{}", File.ReadAllText(baseline), "the baseline is not touched");
    }
}
