using System.Diagnostics;
using System.Text;

namespace OnnxLora.MergeExport.Tests;

/// <summary>
/// Packs tools/MergeExport as a .NET tool, installs it from that package into a temp tool path and runs
/// it. Slow by nature (the package carries libtorch and ONNX Runtime: a ~450 MB .nupkg, ~1.8 GB installed;
/// 1.5 minutes on an idle 2-core machine, 5 on a busy one), so it is one test, in category Slow, that
/// checks everything about the installed tool.
/// </summary>
[TestClass]
public sealed class ToolPackagingTests
{
    private const string GlibcxxVersion = "GLIBCXX_3.4.32";

    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    [TestCategory("Packaging")]
    [TestCategory("Slow")]
    public void PackAndInstall_InstalledToolRunsHelpListingEveryCommand_WithTheTorchSharpCompatStepApplied()
    {
        string temp = Path.Combine(Path.GetTempPath(), "olmx-pack-" + Guid.NewGuid().ToString("N"));
        try
        {
            string packages = Path.Combine(temp, "packages");
            string tools = Path.Combine(temp, "tools");
            var clock = Stopwatch.StartNew();
            // A private artifacts folder keeps this build away from the outputs other test projects run from.
            Run("dotnet", ["pack", Path.Combine(RepoRoot(), "tools", "MergeExport", "OnnxLora.MergeExport.csproj"), "-c", "Release",
                "-o", packages, "--artifacts-path", Path.Combine(temp, "artifacts"), "-nologo", "-v:q", "-nr:false",
                "-p:UseSharedCompilation=false"], TimeSpan.FromMinutes(8));
            TimeSpan packTime = clock.Elapsed;
            string package = Assert.ContainsSingle(Directory.GetFiles(packages, "OnnxLora.MergeExport.*.nupkg"));
            string version = Path.GetFileNameWithoutExtension(package)["OnnxLora.MergeExport.".Length..];

            // Only the local package as a source: the install is hermetic (a tool package has no dependencies).
            string config = Path.Combine(temp, "nuget.config");
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
            Run("dotnet", ["tool", "install", "OnnxLora.MergeExport", "--tool-path", tools, "--configfile", config, "--version", version],
                TimeSpan.FromMinutes(5));
            TestContext.WriteLine($"pack {packTime.TotalSeconds:F0} s, install {clock.Elapsed.TotalSeconds:F0} s, package {new FileInfo(package).Length / 1e6:F0} MB");

            string help = Run(Path.Combine(tools, "merge-export"), ["--help"], TimeSpan.FromMinutes(1));

            StringAssert.Contains(help, "Commands:");
            var root = Cli.BuildRoot(new CliContext(TextWriter.Null, TextWriter.Null, CancellationToken.None));
            Assert.IsNotEmpty(root.Subcommands);
            foreach (var command in root.Subcommands)
            {
                StringAssert.Contains(help, "  " + command.Name, $"--help of the installed tool lists '{command.Name}'");
            }
            AssertTorchSharpCompatApplied(tools);
        }
        finally
        {
            try
            {
                Directory.Delete(temp, recursive: true);
            }
            catch (IOException)
            {
                // Best effort.
            }
        }
    }

    /// <summary>
    /// Where the system C++ runtime lacks GLIBCXX_3.4.32, the installed libLibTorchSharp.so must be the
    /// patched one (build/torchsharp-compat): that version requirement weak, the shim library beside it.
    /// </summary>
    private void AssertTorchSharpCompatApplied(string tools)
    {
        string lib = Assert.ContainsSingle(Directory.GetFiles(Path.Combine(tools, ".store"), "libLibTorchSharp.so", SearchOption.AllDirectories)
            .Where(f => f.Contains(Path.Combine("linux-x64", "native"), StringComparison.Ordinal)));
        if (!OperatingSystem.IsLinux() || SystemLibstdcxxHas(GlibcxxVersion))
        {
            TestContext.WriteLine($"The system libstdc++ has {GlibcxxVersion} (or this is not Linux): the compat step is not needed.");
            return;
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
