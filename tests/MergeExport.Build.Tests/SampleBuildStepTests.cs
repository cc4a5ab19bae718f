using System.Diagnostics;

namespace OnnxLora.MergeExport.Build.Tests;

/// <summary>
/// samples/BuildStep with the REAL merge-export tool on the committed sample model and adapter:
/// the first build merges, exports and validates; the second, with nothing changed, skips the step.
/// </summary>
[TestClass]
public sealed class SampleBuildStepTests
{
    private static string RepoRoot()
    {
        string? dir = AppContext.BaseDirectory;
        while (dir is not null && !File.Exists(Path.Combine(dir, "OnnxLora.sln")))
        {
            dir = Path.GetDirectoryName(dir);
        }
        return dir ?? throw new InvalidOperationException("OnnxLora.sln not found");
    }

    private static (int Code, string Log) Build(string project, string configuration, string outDir)
    {
        var psi = new ProcessStartInfo("dotnet",
            ["build", project, "-c", configuration, "-nologo", "-v:normal", "-p:BuildProjectReferences=false", $"-p:OutDir={outDir}/"])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        psi.Environment["MSBUILDDISABLENODEREUSE"] = "1";
        using var p = Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEndAsync();
        string log = p.StandardOutput.ReadToEnd() + stderr.Result;
        if (!p.WaitForExit(TimeSpan.FromMinutes(8)))
        {
            p.Kill(entireProcessTree: true);
            Assert.Fail("dotnet build of the sample did not finish in 8 minutes");
        }
        return (p.ExitCode, log);
    }

    [TestMethod]
    public void SampleProject_BuildsTwice_SecondBuildSkipsTheStep()
    {
        string root = RepoRoot();
        string configuration = AppContext.BaseDirectory.Contains("/Release/", StringComparison.Ordinal) ? "Release" : "Debug";
        string tool = Path.Combine(root, "tools", "MergeExport", "bin", configuration, "net10.0", "merge-export.dll");
        string task = Path.Combine(root, "tools", "MergeExport.Build", "bin", configuration, "net10.0");
        if (!File.Exists(tool) || !Directory.Exists(task))
        {
            Assert.Fail($"{tool} / {task} missing: building this test project ({configuration}) builds both");
        }
        string project = Path.Combine(root, "samples", "BuildStep", "BuildStep.csproj");
        string outDir = Path.Combine(Path.GetTempPath(), "onnxlora-sample-build-" + Guid.NewGuid().ToString("N"));
        try
        {
            var (code, log) = Build(project, configuration, outDir);
            Assert.AreEqual(0, code, log[^Math.Min(log.Length, 6000)..]);
            string onnx = Path.Combine(outDir, "models", "sample-lora.onnx");
            Assert.IsTrue(File.Exists(onnx), "the merged model is copied to OutputFile");
            Assert.IsTrue(Directory.Exists(onnx + ".report"), "the reports are copied beside it");
            var written = File.GetLastWriteTimeUtc(onnx);

            var (code2, log2) = Build(project, configuration, outDir);
            Assert.AreEqual(0, code2, log2[^Math.Min(log2.Length, 6000)..]);
            StringAssert.Contains(log2, "up to date");
            Assert.AreEqual(written, File.GetLastWriteTimeUtc(onnx), "the second build must not rewrite the model");
        }
        finally
        {
            if (Directory.Exists(outDir))
            {
                Directory.Delete(outDir, recursive: true);
            }
        }
    }
}
