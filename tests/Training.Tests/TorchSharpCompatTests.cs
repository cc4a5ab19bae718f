using System.Diagnostics;
using System.Security.Cryptography;

namespace OnnxLora.Training.Tests;

/// <summary>
/// The build step in build/torchsharp-compat patches libLibTorchSharp.so only where the C++ runtime
/// lacks GLIBCXX_3.4.32, only in the output copy, and idempotently.
/// </summary>
[TestClass]
public sealed class TorchSharpCompatTests
{
    private const string Version = "GLIBCXX_3.4.32";

    internal static string RepoRoot()
    {
        string? dir = AppContext.BaseDirectory;
        while (dir is not null && !File.Exists(Path.Combine(dir, "OnnxLora.sln")))
        {
            dir = Path.GetDirectoryName(dir);
        }
        return dir ?? throw new InvalidOperationException("repository root (OnnxLora.sln) not found above " + AppContext.BaseDirectory);
    }

    private static string PristineLibrary()
    {
        string root = Environment.GetEnvironmentVariable("NUGET_PACKAGES")
            ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        string lib = Path.Combine(root, "torchsharp", "0.107.0", "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
        if (!File.Exists(lib))
        {
            Assert.Inconclusive($"TorchSharp's package copy not found at {lib}");
        }
        return lib;
    }

    internal static (int ExitCode, string Output) Run(string file, string args, IDictionary<string, string>? env = null)
    {
        var psi = new ProcessStartInfo(file, args) { RedirectStandardOutput = true, RedirectStandardError = true };
        if (env is not null)
        {
            foreach (var (k, v) in env)
            {
                psi.Environment[k] = v;
            }
        }
        using var p = Process.Start(psi)!;
        string output = p.StandardOutput.ReadToEnd() + p.StandardError.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, output);
    }

    internal static string Sha(string path) => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(path)));

    private static string NewOutputDir(string pristine)
    {
        string dir = Path.Combine(Path.GetTempPath(), "onnxlora-compat-" + Guid.NewGuid().ToString("N"));
        string native = Path.Combine(dir, "runtimes", "linux-x64", "native");
        Directory.CreateDirectory(native);
        File.Copy(pristine, Path.Combine(native, "libLibTorchSharp.so"));
        return dir;
    }

    /// <summary>
    /// On a runtime that has GLIBCXX_3.4.32 (a stand-in file naming it) the library is left byte-identical,
    /// unless ONNXLORA_COMPAT_FORCE=1 (set when packing the .NET tool) asks for the patch anyway.
    /// </summary>
    [TestMethod]
    [DataRow(false, DisplayName = "new runtime: untouched")]
    [DataRow(true, DisplayName = "new runtime, forced for a tool package: patched")]
    public void Patch_WhenRuntimeProvidesVersion_PatchesOnlyWhenForced(bool forced)
    {
        if (!OperatingSystem.IsLinux())
        {
            Assert.Inconclusive("Linux only");
        }
        string pristine = PristineLibrary();
        string outDir = NewOutputDir(pristine);
        string fakeRuntime = Path.Combine(outDir, "libstdc++-new.so.6");
        File.WriteAllText(fakeRuntime, "stand-in for a GCC 13 runtime: " + Version);
        var env = new Dictionary<string, string> { ["ONNXLORA_LIBSTDCXX"] = fakeRuntime };
        if (forced)
        {
            env["ONNXLORA_COMPAT_FORCE"] = "1";
        }
        try
        {
            var (code, output) = Run("bash", $"\"{Path.Combine(RepoRoot(), "build", "torchsharp-compat", "patch.sh")}\" \"{outDir}\" \"{Path.Combine(outDir, "cache")}\"", env);

            Assert.AreEqual(0, code, output);
            StringAssert.Contains(output, forced ? "patched" : "left untouched");
            string lib = Path.Combine(outDir, "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
            Assert.AreEqual(!forced, Sha(pristine) == Sha(lib), "library bytes");
            Assert.AreEqual(forced, File.Exists(Path.Combine(Path.GetDirectoryName(lib)!, "libonnxlora_iosinit.so")), "shim beside the library");
        }
        finally
        {
            Directory.Delete(outDir, recursive: true);
        }
    }

    [TestMethod]
    public void Patch_OnOldRuntime_WeakensVersionAddsShim_IsIdempotent_AndSparesPackageCache()
    {
        if (!OperatingSystem.IsLinux())
        {
            Assert.Inconclusive("Linux only");
        }
        var (_, libs) = Run("bash", "-c \"ldconfig -p | awk '/libstdc\\+\\+\\.so\\.6 .*x86-64/ {print $NF; exit}'\"");
        string runtime = libs.Trim();
        if (runtime.Length == 0 || File.ReadAllText(runtime, System.Text.Encoding.Latin1).Contains(Version, StringComparison.Ordinal))
        {
            Assert.Inconclusive($"this system's libstdc++ ({runtime}) already provides {Version}; the patch path is not exercised here");
        }
        string pristine = PristineLibrary();
        string pristineHash = Sha(pristine);
        string outDir = NewOutputDir(pristine);
        string script = Path.Combine(RepoRoot(), "build", "torchsharp-compat", "patch.sh");
        string args = $"\"{script}\" \"{outDir}\" \"{Path.Combine(outDir, "cache")}\"";
        string lib = Path.Combine(outDir, "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
        try
        {
            var (code, output) = Run("bash", args);
            Assert.AreEqual(0, code, output);
            StringAssert.Contains(output, "patched");

            var (_, versions) = Run("readelf", $"-V \"{lib}\"");
            StringAssert.Matches(versions, new System.Text.RegularExpressions.Regex(@"Name: GLIBCXX_3\.4\.32\s+Flags: WEAK"));
            var (_, dynamic) = Run("readelf", $"-d \"{lib}\"");
            StringAssert.Contains(dynamic, "[libonnxlora_iosinit.so]");
            var (_, symbols) = Run("bash", $"-c \"nm -D '{lib}' | grep ios_base_library_init\"");
            Assert.DoesNotContain("@GLIBCXX_3.4.32", symbols, symbols);
            Assert.IsTrue(File.Exists(Path.Combine(Path.GetDirectoryName(lib)!, "libonnxlora_iosinit.so")));

            string once = Sha(lib);
            var (code2, output2) = Run("bash", args);
            Assert.AreEqual(0, code2, output2);
            Assert.AreEqual(once, Sha(lib), "a second run must not change the patched library");
            Assert.AreEqual(pristineHash, Sha(pristine), "the NuGet package copy must never be modified");
        }
        finally
        {
            Directory.Delete(outDir, recursive: true);
        }
    }
}
