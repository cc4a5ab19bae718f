namespace OnnxLora.MergeExport.Build.Tests;

/// <summary>
/// End to end through <c>dotnet build</c>: a consumer project imports the targets by path and runs the
/// fake merge-export tool (FakeTool/) for its LoraMergeExport item.
/// </summary>
[TestClass]
public sealed class LoraMergeExportTargetsTests
{
    [TestMethod]
    public void Build_WhenToolPasses_CopiesMergedModelAndReportsAndPassesTheGates()
    {
        using var project = ConsumerProject.Create();

        BuildOutcome build = project.Build(wholeBuild: true);

        Assert.IsTrue(build.Succeeded, build.Shown);
        StringAssert.Contains(build.Log, "Consumer -> ", "the whole project was built");
        Assert.AreEqual("fake-onnx:{\"r\":8}adapter-v1", File.ReadAllText(project.OutputFile));
        foreach (string report in new[] { "report.md", "report.html", "report.json" })
        {
            Assert.IsTrue(File.Exists(Path.Combine(project.ReportFolder, report)), report);
        }
        string[] args = Assert.ContainsSingle(project.Invocations).Split('\t');
        CollectionAssert.IsSubsetOf(new[] { "run", "--json", "--max-latency-ratio", "1.05", "--atol", "1e-4" }, args);
        CollectionAssert.DoesNotContain(args, "--no-validate");
        Assert.AreEqual(Path.Combine(project.Root, "adapters", "x"), args[Array.IndexOf(args, "--adapter") + 1]);
        StringAssert.Contains(build.Log, "merge-export: fake: mode pass", "the tool's stderr lines are in the build log");
        Assert.IsEmpty(Directory.GetFiles(Path.Combine(project.Root, "out"), ".*"), "no temporary files left beside the output");
    }

    [TestMethod]
    public void Build_IsIncremental_SkipsWhenUnchangedAndRerunsWhenAnInputOrASettingChanges()
    {
        using var project = ConsumerProject.Create();
        Assert.IsTrue(project.Build().Succeeded);
        DateTime firstWrite = File.GetLastWriteTimeUtc(project.OutputFile);

        BuildOutcome unchanged = project.Build();

        Assert.IsTrue(unchanged.Succeeded, unchanged.Shown);
        Assert.HasCount(1, project.Invocations, "the tool ran again although nothing changed");
        StringAssert.Contains(unchanged.Log, "LoRA adapter 'adapters/x': out/x.onnx is up to date");
        StringAssert.Contains(unchanged.Log, "skipping merge-export");
        Assert.AreEqual(firstWrite, File.GetLastWriteTimeUtc(project.OutputFile));

        File.WriteAllText(Path.Combine(project.AdapterFolder, "adapter_model.safetensors"), "adapter-v2");
        BuildOutcome inputChanged = project.Build();

        Assert.IsTrue(inputChanged.Succeeded, inputChanged.Shown);
        Assert.HasCount(2, project.Invocations, "a changed adapter file must re-run the tool");
        Assert.AreEqual("fake-onnx:{\"r\":8}adapter-v2", File.ReadAllText(project.OutputFile));

        project.SetItem("Model=\"base/\" OutputFile=\"out/x.onnx\" MaxLatencyRatio=\"1.10\" Atol=\"1e-4\"");
        BuildOutcome settingChanged = project.Build();

        Assert.IsTrue(settingChanged.Succeeded, settingChanged.Shown);
        Assert.HasCount(3, project.Invocations, "a changed MaxLatencyRatio must re-run the tool");
        CollectionAssert.IsSubsetOf(new[] { "--max-latency-ratio", "1.10" }, project.Invocations[2].Split('\t'));
    }

    [TestMethod]
    public void Build_WhenAGateFails_FailsWithOneOlmx001PerGateNamingAdapterAndGate()
    {
        using var project = ConsumerProject.Create();
        project.SetFakeMode("gate-fail");

        BuildOutcome build = project.Build();

        Assert.IsFalse(build.Succeeded, build.Shown);
        StringAssert.Contains(build.Log,
            "adapters/x : error OLMX001: LoRA adapter 'adapters/x': validation gate max-latency-ratio failed: 1.21 > 1.05");
        StringAssert.Contains(build.Log, "see out/x.onnx.report/report.md");
        StringAssert.Contains(build.Log,
            "error OLMX001: LoRA adapter 'adapters/x': validation gate atol on output 'logits' failed: 0.003 > 0.0001");
        Assert.AreEqual(2, build.Count("1>adapters/x : error OLMX001"), build.Shown);
        Assert.IsFalse(File.Exists(project.OutputFile), "a model that failed its gates is not copied");
        Assert.IsTrue(File.Exists(Path.Combine(project.ReportFolder, "report.md")), "the report is there to read");
    }

    [TestMethod]
    public void Build_WhenToolReportsAnError_FailsWithOlmx002CarryingItsMessage()
    {
        using var project = ConsumerProject.Create();
        project.SetFakeMode("error");

        BuildOutcome build = project.Build();

        Assert.IsFalse(build.Succeeded, build.Shown);
        StringAssert.Contains(build.Log,
            "error OLMX002: LoRA adapter 'adapters/x': merge-export failed: adapter_config.json: r: found 0, expected a positive integer.");
        Assert.IsFalse(File.Exists(project.OutputFile));
    }

    [TestMethod]
    public void Build_WhenToolPrintsNoJson_FailsWithOlmx002NamingExitCodeAndLastMessage()
    {
        using var project = ConsumerProject.Create();
        project.SetFakeMode("garbage");

        BuildOutcome build = project.Build();

        Assert.IsFalse(build.Succeeded, build.Shown);
        StringAssert.Contains(build.Log, "error OLMX002: LoRA adapter 'adapters/x': merge-export exited with code 3: found 'this is not JSON' on stdout");
        StringAssert.Contains(build.Log, "Last message: fake: Unhandled exception. System.InvalidOperationException: boom");
    }

    [TestMethod]
    public void Build_WhenModelFolderIsMissing_FailsWithOlmx003BeforeRunningTheTool()
    {
        using var project = ConsumerProject.Create("Model=\"no-such-base/\" OutputFile=\"out/x.onnx\"");

        BuildOutcome build = project.Build();

        Assert.IsFalse(build.Succeeded, build.Shown);
        StringAssert.Contains(build.Log, "error OLMX003: LoRA adapter 'adapters/x': Model 'no-such-base/' not found");
        StringAssert.Contains(build.Log, Path.Combine(project.Root, "no-such-base"));
        Assert.IsEmpty(project.Invocations);
    }

    [TestMethod]
    public void Build_WithBadMetadata_FailsWithOneErrorPerProblem()
    {
        using var project = ConsumerProject.Create("Model=\"base/\" MaxLatencyRatio=\"fast\" Validate=\"maybe\"");

        BuildOutcome build = project.Build();

        Assert.IsFalse(build.Succeeded, build.Shown);
        StringAssert.Contains(build.Log, "error OLMX005: LoRA adapter 'adapters/x': the OutputFile metadata is not set");
        StringAssert.Contains(build.Log, "error OLMX006: LoRA adapter 'adapters/x': metadata MaxLatencyRatio: found 'fast', expected a number > 0");
        StringAssert.Contains(build.Log, "error OLMX006: LoRA adapter 'adapters/x': metadata Validate: found 'maybe', expected true or false");
        Assert.IsEmpty(project.Invocations);
    }

    [TestMethod]
    public void Build_WhenToolCannotBeStarted_FailsWithOlmx007()
    {
        using var project = ConsumerProject.Create();

        BuildOutcome build = project.Build(toolPath: Path.Combine(project.Root, "missing", "merge-export"));

        Assert.IsFalse(build.Succeeded, build.Shown);
        StringAssert.Contains(build.Log, "error OLMX007: LoRA adapter 'adapters/x': could not start the merge-export tool");
        StringAssert.Contains(build.Log, "MergeExportToolPath");
    }

    [TestMethod]
    public void Build_WithAnExecutableToolAndValidateFalse_RunsItWithNoValidateAndWritesNoReport()
    {
        if (OperatingSystem.IsWindows())
        {
            Assert.Inconclusive("Uses a shell script as the executable tool.");
            return;
        }
        using var project = ConsumerProject.Create("Model=\"base/\" OutputFile=\"out/x.onnx\" Validate=\"false\"");
        string script = Path.Combine(project.Root, "merge-export.sh");
        File.WriteAllText(script, $"#!/bin/sh\nexec dotnet \"{ConsumerProject.FakeToolDll}\" \"$@\"\n");
        File.SetUnixFileMode(script, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);

        BuildOutcome build = project.Build(toolPath: script);

        Assert.IsTrue(build.Succeeded, build.Shown);
        CollectionAssert.Contains(Assert.ContainsSingle(project.Invocations).Split('\t'), "--no-validate");
        Assert.IsTrue(File.Exists(project.OutputFile));
        Assert.IsFalse(Directory.Exists(project.ReportFolder));
    }

    [TestMethod]
    public void Build_FromThePackageLayout_LoadsTheTaskFromTasksFolder()
    {
        using var project = ConsumerProject.Create(packageLayout: true);

        BuildOutcome build = project.Build();

        Assert.IsTrue(build.Succeeded, build.Shown);
        Assert.AreEqual("fake-onnx:{\"r\":8}adapter-v1", File.ReadAllText(project.OutputFile));
        Assert.ContainsSingle(project.Invocations);
    }
}
