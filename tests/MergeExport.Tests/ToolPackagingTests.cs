using System.Diagnostics;
using System.Text;

namespace OnnxLora.MergeExport.Tests;

/// <summary>
/// Packs tools/MergeExport as a .NET tool, installs it from that package into a temp tool path and runs
/// it. Slow by nature (the package carries libtorch and ONNX Runtime: a ~450 MB .nupkg, ~1.8 GB installed;
/// 1.5 minutes on an idle 2-core machine, 5 on a busy one), so the package is built and installed once for the
/// class, in category Slow: one test runs the installed tool for real (--help, an export that loads libtorch, a
/// validation that loads ONNX Runtime), one checks the TorchSharp compat step where the system needs it.
/// </summary>
[TestClass]
public sealed class ToolPackagingTests
{
    private const string GlibcxxVersion = "GLIBCXX_3.4.32";

    private static string _temp = "";
    private static string _tools = "";

    public TestContext TestContext { get; set; } = null!;

    [ClassInitialize]
    public static void PackAndInstall(TestContext context)
    {
        _temp = Path.Combine(Path.GetTempPath(), "olmx-pack-" + Guid.NewGuid().ToString("N"));
        string packages = Path.Combine(_temp, "packages");
        _tools = Path.Combine(_temp, "tools");
        var clock = Stopwatch.StartNew();
        // A private artifacts folder keeps this build away from the outputs other test projects run from.
        Run("dotnet", ["pack", Path.Combine(RepoRoot(), "tools", "MergeExport", "OnnxLora.MergeExport.csproj"), "-c", "Release",
            "-o", packages, "--artifacts-path", Path.Combine(_temp, "artifacts"), "-nologo", "-v:q", "-nr:false",
            "-p:UseSharedCompilation=false"], TimeSpan.FromMinutes(8));
        TimeSpan packTime = clock.Elapsed;
        string package = Assert.ContainsSingle(Directory.GetFiles(packages, "OnnxLora.MergeExport.*.nupkg"));
        string version = Path.GetFileNameWithoutExtension(package)["OnnxLora.MergeExport.".Length..];

        // Only the local package as a source: the install is hermetic (a tool package has no dependencies).
        string config = Path.Combine(_temp, "nuget.config");
        File.WriteAllText(config, $"""
            <?xml version="1.0" encoding="utf-8"?>
            <configuration>
              <packageSources>
                <clear />
                <add key="local" value="{packages}" />
              </packageSources>
            </configuration>
            """);
        clock.Restart();
        Run("dotnet", ["tool", "install", "OnnxLora.MergeExport", "--tool-path", _tools, "--configfile", config, "--version", version],
            TimeSpan.FromMinutes(5));
        context.WriteLine($"pack {packTime.TotalSeconds:F0} s, install {clock.Elapsed.TotalSeconds:F0} s, package {new FileInfo(package).Length / 1e6:F0} MB");
    }

    [ClassCleanup]
    public static void DeleteInstall()
    {
        try
        {
            if (_temp.Length > 0)
            {
                Directory.Delete(_temp, recursive: true);
            }
        }
        catch (IOException)
        {
            // Best effort.
        }
    }

    [TestMethod]
    [TestCategory("Packaging")]
    [TestCategory("Slow")]
    public void InstalledTool_ListsEveryCommand_ExportsWithLibtorchAndValidatesWithOnnxRuntime()
    {
        string tool = Path.Combine(_tools, "merge-export");
        string help = Run(tool, ["--help"], TimeSpan.FromMinutes(1));
        StringAssert.Contains(help, "Commands:");
        var root = Cli.BuildRoot(new CliContext(TextWriter.Null, TextWriter.Null, CancellationToken.None));
        Assert.IsNotEmpty(root.Subcommands);
        foreach (var command in root.Subcommands)
        {
            StringAssert.Contains(help, "  " + command.Name, $"--help of the installed tool lists '{command.Name}'");
        }

        // A real export (TorchSharp + libtorch load the checkpoint and merge the adapter) and a validation (ONNX Runtime
        // runs both graphs): what --help alone never loads.
        string work = Path.Combine(_temp, "work");
        Directory.CreateDirectory(work);
        string merged = Path.Combine(work, "merged.onnx"), unmerged = Path.Combine(work, "unmerged.onnx");
        Run(tool, ["export", "--model", SampleModels.Model, "--adapter", SampleModels.Adapter, "--mode", "merged", "--out", merged], TimeSpan.FromMinutes(3));
        Run(tool, ["export", "--model", SampleModels.Model, "--adapter", SampleModels.Adapter, "--mode", "unmerged", "--out", unmerged], TimeSpan.FromMinutes(3));
        string validation = Run(tool, ["validate", "--merged", merged, "--unmerged", unmerged, "--device", "cpu", "--runs", "0", "--warmup", "0",
            "--report", Path.Combine(work, "report"), "--json"], TimeSpan.FromMinutes(3));

        using var result = System.Text.Json.JsonDocument.Parse(validation);
        Assert.AreEqual("passed", result.RootElement.GetProperty("status").GetString(), validation);
        double maxAbs = result.RootElement.GetProperty("details").GetProperty("maxAbsError").GetProperty("merged vs unmerged").GetDouble();
        Assert.IsLessThan(1e-4, maxAbs, "the installed tool's merged and unmerged exports agree");
        // The file the installed tool wrote is the one the in-repo build writes.
        float[] expected = OnnxLogits.Run(merged);
        using var dir = new TempDir();
        var (code, _, err) = CliHarness.Run("export", "--model", SampleModels.Model, "--adapter", SampleModels.Adapter, "--mode", "merged", "--out", dir.File("m.onnx"));
        Assert.AreEqual(0, code, err);
        Assert.IsLessThan(1e-5, OnnxLogits.MaxAbsDiff(OnnxLogits.Run(dir.File("m.onnx")), expected));
    }

    /// <summary>
    /// Where the system C++ runtime lacks GLIBCXX_3.4.32, the installed libLibTorchSharp.so must be the
    /// patched one (build/torchsharp-compat): that version requirement weak, the shim library beside it.
    /// Elsewhere the step is not needed and cannot be checked: Inconclusive, saying so.
    /// </summary>
    [TestMethod]
    [TestCategory("Packaging")]
    [TestCategory("Slow")]
    public void InstalledTool_OnAnOlderCxxRuntime_HasTheTorchSharpCompatStepApplied()
    {
        string lib = Assert.ContainsSingle(Directory.GetFiles(Path.Combine(_tools, ".store"), "libLibTorchSharp.so", SearchOption.AllDirectories)
            .Where(f => f.Contains(Path.Combine("linux-x64", "native"), StringComparison.Ordinal)));
        if (!OperatingSystem.IsLinux() || SystemLibstdcxxHas(GlibcxxVersion))
        {
            Assert.Inconclusive($"the system libstdc++ has {GlibcxxVersion} (or this is not Linux): the compat step is not needed here, so it cannot be checked.");
        }
        Assert.IsTrue(File.Exists(Path.Combine(Path.GetDirectoryName(lib)!, "libonnxlora_iosinit.so")), "the compat shim is installed beside " + lib);
        string versions = Run("readelf", ["-V", lib], TimeSpan.FromMinutes(1));
        string line = Assert.ContainsSingle(versions.Split('\n').Where(l => l.Contains("Name: " + GlibcxxVersion, StringComparison.Ordinal)));
        StringAssert.Contains(line, "Flags: WEAK", $"the installed {lib} requires {GlibcxxVersion} weakly (patched)");
    }

    private static bool SystemLibstdcxxHas(string version)
    {
        string[] candidates =
        [
            "/lib/x86_64-linux-gnu/libstdc++.so.6", "/usr/lib/x86_64-linux-gnu/libstdc++.so.6",
            "/usr/lib64/libstdc++.so.6", "/lib/aarch64-linux-gnu/libstdc++.so.6", "/usr/lib/libstdc++.so.6",
        ];
        string? path = candidates.FirstOrDefault(File.Exists);
        if (path is null)
        {
            return false;
        }
        byte[] needle = Encoding.ASCII.GetBytes(version);
        return File.ReadAllBytes(path).AsSpan().IndexOf(needle) >= 0;
    }

    private static string Run(string fileName, string[] arguments, TimeSpan timeout)
    {
        var info = new ProcessStartInfo(fileName)
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
        };
        foreach (string argument in arguments)
        {
            info.ArgumentList.Add(argument);
        }
        // The test host runs under `dotnet test`, whose MSBuild variables must not leak into this build.
        foreach (string name in info.Environment.Keys.Where(k => k.StartsWith("MSBUILD", StringComparison.OrdinalIgnoreCase)).ToList())
        {
            info.Environment.Remove(name);
        }
        info.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        info.Environment["DOTNET_NOLOGO"] = "1";
        using var process = Process.Start(info)!;
        process.StandardInput.Close();
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(timeout))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"{fileName} {string.Join(' ', arguments)} did not finish in {timeout.TotalMinutes} minutes.");
        }
        string output = stdout.GetAwaiter().GetResult() + stderr.GetAwaiter().GetResult();
        Assert.AreEqual(0, process.ExitCode, $"{fileName} {string.Join(' ', arguments)} failed:\n{output}");
        return output;
    }

    private static string RepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "OnnxLora.sln")))
            {
                return dir.FullName;
            }
        }
        throw new DirectoryNotFoundException($"OnnxLora.sln not found above {AppContext.BaseDirectory}.");
    }
}
