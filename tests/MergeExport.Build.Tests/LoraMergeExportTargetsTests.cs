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
        foreach (string report in new[] { "validation.md", "validation.html", "validation.json" })
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
        StringAssert.Contains(build.Log, "(see out/x.onnx.report/validation.md)", "the hint names the Markdown report the tool reported");
        StringAssert.Contains(build.Log,
            "error OLMX001: LoRA adapter 'adapters/x': validation gate atol on output 'logits' failed: 0.003 > 0.0001");
        Assert.AreEqual(2, build.Count("1>adapters/x : error OLMX001"), build.Shown);
        Assert.IsFalse(File.Exists(project.OutputFile), "a model that failed its gates is not copied");
        Assert.IsTrue(File.Exists(Path.Combine(project.ReportFolder, "validation.md")), "the report is there to read");
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
    [DataRow("bug", DisplayName = "JSON result with status error")]
    [DataRow("bug-no-json", DisplayName = "only the stderr one-liner (older tool)")]
    public void Build_WhenToolExitsWithAnInternalError_FailsWithOlmx002SayingItIsAToolBug(string mode)
    {
        using var project = ConsumerProject.Create();
        project.SetFakeMode(mode);

        BuildOutcome build = project.Build();

        Assert.IsFalse(build.Succeeded, build.Shown);
        StringAssert.Contains(build.Log,
            "error OLMX002: LoRA adapter 'adapters/x': merge-export stopped on an internal error (exit code 70); this is a bug in the tool, not a problem with this item: "
            + "internal error: Index was outside the bounds of the array. (this is a bug; rerun with --verbose and report it)", build.Shown);
        Assert.AreEqual(1, build.Count("1>adapters/x : error OLMX002"), build.Shown);
        Assert.AreEqual(0, build.Count("error MSB"), "no generic ToolTask error besides ours: " + build.Shown);
        Assert.IsFalse(File.Exists(project.OutputFile));
    }

    [TestMethod]
    public void Build_WhenToolExitsCancelled_FailsWithOlmx002Cancelled()
    {
        using var project = ConsumerProject.Create();
        project.SetFakeMode("cancelled");

        BuildOutcome build = project.Build();

        Assert.IsFalse(build.Succeeded, build.Shown);
        StringAssert.Contains(build.Log, "error OLMX002: LoRA adapter 'adapters/x': merge-export was cancelled (exit code 130).", build.Shown);
    }

    [TestMethod]
    public void Build_WhenTheBuildIsCancelled_KillsTheToolAndFails()
    {
        if (OperatingSystem.IsWindows())
        {
            Assert.Inconclusive("Interrupts the build with SIGINT.");
            return;
        }
        using var project = ConsumerProject.Create();
        project.SetFakeMode("hang");
        string pidFile = Path.Combine(project.AdapterFolder, "fake.pid");
        var clock = System.Diagnostics.Stopwatch.StartNew();

        BuildOutcome build = project.Build(toolPath: null, wholeBuild: false, whileRunning: dotnet =>
        {
            while (!File.Exists(pidFile) || new FileInfo(pidFile).Length == 0)
            {
                Assert.IsFalse(dotnet.HasExited, "the build ended before the tool started");
                Assert.IsLessThan(90.0, clock.Elapsed.TotalSeconds, "the tool did not start in 90 s");
                Thread.Sleep(100);
            }
            // Ctrl+C, as a terminal sends it to the build.
            using var interrupt = System.Diagnostics.Process.Start("kill", ["-INT", dotnet.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
            interrupt.WaitForExit();
        });

        Assert.IsFalse(build.Succeeded, build.Shown);
        Assert.IsLessThan(100.0, clock.Elapsed.TotalSeconds, "the build waited for the tool's two-minute sleep instead of killing it: " + build.Shown);
        StringAssert.Contains(build.Log, "LoRA adapter 'adapters/x': merge-export was cancelled.", build.Shown);
        int toolPid = int.Parse(File.ReadAllText(pidFile), System.Globalization.CultureInfo.InvariantCulture);
        Assert.IsFalse(IsRunning(toolPid), $"the tool (process {toolPid}) is still running after the build was cancelled");
        Assert.IsFalse(File.Exists(project.OutputFile));
    }

    [TestMethod]
    public void Build_WithSpacesInThePaths_PassesEachPathAsOneArgument()
    {
        using var project = ConsumerProject.Create(folderPrefix: "with space ");

        BuildOutcome build = project.Build();

        Assert.IsTrue(build.Succeeded, build.Shown);
        string[] args = Assert.ContainsSingle(project.Invocations).Split('\t');
        Assert.AreEqual(Path.Combine(project.Root, "adapters", "x"), args[Array.IndexOf(args, "--adapter") + 1]);
        Assert.AreEqual(Path.Combine(project.Root, "base") + "/", args[Array.IndexOf(args, "--model") + 1]);
        StringAssert.StartsWith(args[Array.IndexOf(args, "--out") + 1], Path.Combine(project.Root, "obj", "lora-merge-export"));
        Assert.IsTrue(File.Exists(project.OutputFile));
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

    /// <summary>Whether the process exists and is not a zombie (Linux: /proc/PID/stat's state field).</summary>
    private static bool IsRunning(int pid)
    {
        string stat = $"/proc/{pid.ToString(System.Globalization.CultureInfo.InvariantCulture)}/stat";
        try
        {
            string text = File.ReadAllText(stat);
            char state = text[(text.LastIndexOf(')') + 2)..][0];
            return state is not ('Z' or 'X');
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            return false;
        }
    }

    [TestMethod]
    public void OnnxAdapterFile_WhenTheToolWritesNoAdapterFile_FailsWithOlmx010AndCopiesNothing()
    {
        // The fake tool (pass mode) writes no onnxAdapter output, as the real one does for an adapter that cannot be one.
        using var project = ConsumerProject.Create("Model=\"base/\" OutputFile=\"out/x.onnx\" OnnxAdapterFile=\"out/x.onnx_adapter\"");

        BuildOutcome build = project.Build();

        Assert.IsFalse(build.Succeeded, build.Shown);
        StringAssert.Contains(build.Log, "adapters/x : error OLMX010: LoRA adapter 'adapters/x': OnnxAdapterFile/AdaptersModelFile is set but merge-export wrote no ONNX Runtime adapter");
        Assert.IsFalse(File.Exists(project.OutputFile), "nothing is copied when an asked-for output is missing");
        Assert.IsFalse(File.Exists(Path.Combine(project.Root, "out", "x.onnx_adapter")));
    }
}
