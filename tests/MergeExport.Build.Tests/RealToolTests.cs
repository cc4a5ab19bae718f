using System.Text.RegularExpressions;

namespace OnnxLora.MergeExport.Build.Tests;

/// <summary>
/// The build step against the REAL merge-export (built beside the tests) on the committed sample model
/// and adapter: its failures must reach the build as the errors docs/msbuild.md promises, whatever file
/// names and messages the tool actually writes.
/// </summary>
[TestClass]
public sealed partial class RealToolTests
{
    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    public void Build_WithAnImpossibleLatencyGate_FailsWithOlmx001NamingTheGateAndAReportThatExists()
    {
        using var project = ConsumerProject.Create($"Model=\"{ConsumerProject.SampleModel}\" OutputFile=\"out/x.onnx\" MaxLatencyRatio=\"0.01\"");
        project.UseSampleAdapter();

        BuildOutcome build = project.Build(toolPath: ConsumerProject.RealToolDll);

        Assert.IsFalse(build.Succeeded, build.Shown);
        string error = FirstLineWith(build, "error OLMX001");
        TestContext.WriteLine(error);
        StringAssert.Contains(error, "adapters/x : error OLMX001: LoRA adapter 'adapters/x': validation gate max-latency-ratio failed: ");
        StringAssert.Contains(error, " > 0.01 ");
        Match hint = SeeHint().Matches(error).LastOrDefault() ?? throw new AssertFailedException("the error points at no report: " + error);
        string hinted = Path.Combine(project.Root, hint.Groups["path"].Value);
        Assert.IsTrue(File.Exists(hinted), $"the error points at {hinted}, which does not exist; the report folder holds: "
            + string.Join(", ", Directory.Exists(project.ReportFolder) ? Directory.GetFiles(project.ReportFolder).Select(Path.GetFileName) : ["nothing"]));
        StringAssert.Contains(File.ReadAllText(hinted), "max-latency-ratio", "the hinted report is the one of this run");
        Assert.IsFalse(File.Exists(project.OutputFile), "a model that failed its gates is not copied");
    }

    [TestMethod]
    public void Build_WithAMalformedAdapterConfig_FailsWithOlmx002CarryingTheToolsOneLineMessage()
    {
        using var project = ConsumerProject.Create($"Model=\"{ConsumerProject.SampleModel}\" OutputFile=\"out/x.onnx\"");
        project.UseSampleAdapter();
        File.WriteAllText(Path.Combine(project.AdapterFolder, "adapter_config.json"), "{\"r\": 8, \"lora_alpha\": ");

        BuildOutcome build = project.Build(toolPath: ConsumerProject.RealToolDll);

        Assert.IsFalse(build.Succeeded, build.Shown);
        string error = FirstLineWith(build, "error OLMX002");
        TestContext.WriteLine(error);
        StringAssert.Contains(error, "adapters/x : error OLMX002: LoRA adapter 'adapters/x': merge-export failed: ");
        StringAssert.Contains(error, "adapter_config.json", "the tool's message names the bad file");
        Assert.DoesNotContain("exited with code", error, "the tool's message, not the no-result fallback");
        Assert.DoesNotContain("merge-export run: error:", error, "the message without the tool's own prefix");
        Assert.AreEqual(1, build.Count("1>adapters/x : error OLMX002"), build.Shown);
        Assert.AreEqual(0, build.Count("error MSB"), "no generic ToolTask error besides ours: " + build.Shown);
        Assert.IsFalse(File.Exists(project.OutputFile));
    }

    [TestMethod]
    public void Build_WithOnnxAdapterFileAndAdaptersModelFile_CopiesTheToolsAdapterFileAndGraph()
    {
        using var project = ConsumerProject.Create($"Model=\"{ConsumerProject.SampleModel}\" OutputFile=\"out/x.onnx\" OnnxAdapterFile=\"out/x.onnx_adapter\" AdaptersModelFile=\"out/adapters.onnx\"");
        project.UseSampleAdapter();

        BuildOutcome build = project.Build(toolPath: ConsumerProject.RealToolDll);

        Assert.IsTrue(build.Succeeded, build.Shown);
        Assert.IsTrue(File.Exists(project.OutputFile));
        string adapterFile = Path.Combine(project.Root, "out", "x.onnx_adapter");
        byte[] adapter = File.ReadAllBytes(adapterFile);
        // ONNX Runtime's adapter format: a FlatBuffer with the file identifier "TORT" at bytes 4..8 (onnxruntime adapter_schema.fbs).
        Assert.AreEqual("TORT", System.Text.Encoding.ASCII.GetString(adapter, 4, 4));
        string work = Directory.GetDirectories(Path.Combine(project.Root, "obj", "lora-merge-export")).Single();
        CollectionAssert.AreEqual(File.ReadAllBytes(Path.Combine(work, "out", "x.onnx_adapter")), adapter, "the tool's file, copied");
        CollectionAssert.AreEqual(File.ReadAllBytes(Path.Combine(work, "out", "adapters.onnx")), File.ReadAllBytes(Path.Combine(project.Root, "out", "adapters.onnx")));
    }

    [TestMethod]
    public void Build_WithGraphOptimizationNoneAndCpuMemArenaFalse_ValidatesWithThemAsTheReportRecords()
    {
        using var project = ConsumerProject.Create($"Model=\"{ConsumerProject.SampleModel}\" OutputFile=\"out/x.onnx\" GraphOptimization=\"none\" CpuMemArena=\"false\"");
        project.UseSampleAdapter();

        BuildOutcome build = project.Build(toolPath: ConsumerProject.RealToolDll);

        Assert.IsTrue(build.Succeeded, build.Shown);
        using var report = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(project.ReportFolder, "validation.json")));
        // docs/report-schema.md: provider.session is what the sessions ran with.
        System.Text.Json.JsonElement session = report.RootElement.GetProperty("provider").GetProperty("session");
        Assert.AreEqual("none", session.GetProperty("graphOptimization").GetString());
        Assert.IsFalse(session.GetProperty("cpuMemArena").GetBoolean());
    }

    private static string FirstLineWith(BuildOutcome build, string text) =>
        build.Log.Split('\n').Select(line => line.TrimEnd('\r')).FirstOrDefault(line => line.Contains(text, StringComparison.Ordinal))
        ?? throw new AssertFailedException($"no line with '{text}' in the build log:\n{build.Shown}");

    [GeneratedRegex(@"\(see (?<path>[^()]+)\)")]
    private static partial Regex SeeHint();
}
