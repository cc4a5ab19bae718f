namespace OnnxLora.MergeExport.Build.Tests;

/// <summary>GraphOptimization and CpuMemArena (ONNX Runtime session options of the validation) through <c>dotnet build</c> with the fake tool.</summary>
[TestClass]
public sealed class SessionOptionsTests
{
    private const string WithSessionOptions = ConsumerProject.DefaultItem + " GraphOptimization=\"none\" CpuMemArena=\"false\"";

    [TestMethod]
    public void Build_WithSessionOptions_PassesThemToTheTool_AndRerunsWhenOneChanges()
    {
        using var project = ConsumerProject.Create(WithSessionOptions);

        BuildOutcome first = project.Build();
        BuildOutcome unchanged = project.Build();
        project.SetItem(ConsumerProject.DefaultItem + " GraphOptimization=\"none\" CpuMemArena=\"true\"");
        BuildOutcome arenaOn = project.Build();

        Assert.IsTrue(first.Succeeded, first.Shown);
        string[] args = project.Invocations[0].Split('\t');
        Assert.AreEqual("none", args[Array.IndexOf(args, "--graph-optimization") + 1]);
        CollectionAssert.Contains(args, "--no-cpu-mem-arena");
        Assert.IsTrue(unchanged.Succeeded, unchanged.Shown);
        Assert.IsTrue(arenaOn.Succeeded, arenaOn.Shown);
        Assert.HasCount(2, project.Invocations, "skipped while nothing changed, re-run when CpuMemArena changed");
        string[] rerun = project.Invocations[1].Split('\t');
        CollectionAssert.IsSubsetOf(new[] { "--graph-optimization", "none" }, rerun);
        CollectionAssert.DoesNotContain(rerun, "--no-cpu-mem-arena", "CpuMemArena=\"true\" is the tool's default: nothing to pass");
    }

    [TestMethod]
    public void Build_WithoutSessionOptions_PassesNeither()
    {
        using var project = ConsumerProject.Create();

        BuildOutcome build = project.Build();

        Assert.IsTrue(build.Succeeded, build.Shown);
        string[] args = Assert.ContainsSingle(project.Invocations).Split('\t');
        CollectionAssert.DoesNotContain(args, "--graph-optimization");
        CollectionAssert.DoesNotContain(args, "--no-cpu-mem-arena");
    }

    [TestMethod]
    public void Build_BadSessionOptions_FailsWithOneOlmx006EachBeforeRunningTheTool()
    {
        using var project = ConsumerProject.Create(ConsumerProject.DefaultItem + " GraphOptimization=\"None\" CpuMemArena=\"off\"");

        BuildOutcome build = project.Build();

        Assert.IsFalse(build.Succeeded, build.Shown);
        StringAssert.Contains(build.Log,
            "adapters/x : error OLMX006: LoRA adapter 'adapters/x': metadata GraphOptimization: found 'None', expected one of all, extended, basic, none (lowercase, as merge-export --graph-optimization takes it).");
        StringAssert.Contains(build.Log,
            "adapters/x : error OLMX006: LoRA adapter 'adapters/x': metadata CpuMemArena: found 'off', expected true or false (false turns ONNX Runtime's CPU memory arena off).");
        Assert.AreEqual(2, build.Count("1>adapters/x : error OLMX006"), build.Shown);
        Assert.IsEmpty(project.Invocations);
    }
}
