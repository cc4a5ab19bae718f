using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;
using TorchSharp;

namespace OnnxLora.Training.Tests;

/// <summary>
/// The build step build/torchsharp-compat/mkl_cpu.sh: the oneMKL inside libtorch_cpu.so takes its ISA-specific
/// kernels on any x86-64 CPU that has the instructions, not only on Intel's; the step patches only the output copy
/// of libc10.so, idempotently, and leaves outputs without MKL alone.
/// </summary>
[TestClass]
public sealed class MklCpuShimTests
{
    // mkl_serv_cpu_detect()'s code-path numbers, read off MKL 2024.2 by forcing MKL_ENABLE_INSTRUCTIONS on this
    // project's AMD EPYC: 0 generic ("def"), 3 SSE4.2, 5 AVX2 (AVX-512 paths are higher).
    private const int MklAvx2Path = 5;

    /// <summary>
    /// On a CPU with AVX2 and FMA, MKL's first GEMM must pick at least its AVX2 path. Without the shim, an AMD CPU
    /// gets path 0 (the generic kernels) and this fails; on an Intel CPU it passes either way.
    /// </summary>
    [TestMethod]
    public void Mkl_OnAnAvx2Cpu_ChoosesAtLeastItsAvx2Kernels()
    {
        if (!OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture != Architecture.X64)
        {
            Assert.Inconclusive("x86-64 Linux only (the libtorch with oneMKL inside)");
        }
        if (!Avx2.IsSupported || !Fma.IsSupported)
        {
            Assert.Inconclusive("this CPU (or the runtime's settings) has no AVX2 + FMA: MKL's generic path is the right one");
        }
        if (Environment.GetEnvironmentVariable("MKL_ENABLE_INSTRUCTIONS") is { Length: > 0 } limit)
        {
            Assert.Inconclusive($"MKL_ENABLE_INSTRUCTIONS={limit} limits MKL's code path on purpose");
        }
        using (var a = torch.ones(64, 64))
        using (var product = a.matmul(a))
        {
            Assert.AreEqual(64.0f, product[3, 5].ToSingle()); // MKL detects the CPU at its first GEMM
        }

        int path = MklCpuDetect();

        Assert.IsGreaterThanOrEqualTo(MklAvx2Path, path,
            $"MKL code path {path} on a CPU with AVX2 ({CpuVendor()}): 0 is MKL's generic path, which it takes on non-Intel CPUs unless " +
            "libonnxlora_mklcpu.so (build/torchsharp-compat/mkl_cpu.sh) is in the process's global scope");
    }

    [TestMethod]
    public void Step_PatchesOnlyTheOutputCopyOfLibc10_AndIsIdempotent()
    {
        string package = PackageNativeDir();
        string outDir = NewOutputDir(package, linkTorchCpu: true);
        string c10 = Path.Combine(outDir, "libc10.so");
        string pristineHash = Sha(Path.Combine(package, "libc10.so"));
        try
        {
            var (code, output) = RunStep(outDir);
            Assert.AreEqual(0, code, output);
            StringAssert.Contains(output, "patched");
            StringAssert.Contains(Run("readelf", $"-d \"{c10}\"").Output, "[libonnxlora_mklcpu.so]");
            Assert.IsTrue(File.Exists(Path.Combine(outDir, "libonnxlora_mklcpu.so")), "shim beside libc10.so");
            StringAssert.Contains(Run("nm", $"-D --defined-only \"{Path.Combine(outDir, "libonnxlora_mklcpu.so")}\"").Output, "mkl_serv_intel_cpu_true");

            string once = Sha(c10);
            var (code2, output2) = RunStep(outDir);
            Assert.AreEqual(0, code2, output2);
            Assert.AreEqual(once, Sha(c10), "a second run must not change the patched library");
            Assert.AreEqual(pristineHash, Sha(Path.Combine(package, "libc10.so")), "the NuGet package copy must never be modified");
        }
        finally
        {
            Directory.Delete(outDir, recursive: true);
        }
    }

    /// <summary>A libtorch_cpu.so that does not call MKL's vendor check (a libtorch built without MKL) is left alone.</summary>
    [TestMethod]
    public void Step_WithoutMklInLibtorchCpu_LeavesLibc10Untouched()
    {
        string package = PackageNativeDir();
        string outDir = NewOutputDir(package, linkTorchCpu: false);
        string c10 = Path.Combine(outDir, "libc10.so");
        try
        {
            // Any ELF library without the PLT call stands in for a libtorch_cpu.so without MKL: libc10.so itself.
            File.Copy(Path.Combine(package, "libc10.so"), Path.Combine(outDir, "libtorch_cpu.so"));

            var (code, output) = RunStep(outDir);

            Assert.AreEqual(0, code, output);
            StringAssert.Contains(output, "left untouched");
            Assert.AreEqual(Sha(Path.Combine(package, "libc10.so")), Sha(c10));
            Assert.IsFalse(File.Exists(Path.Combine(outDir, "libonnxlora_mklcpu.so")));
        }
        finally
        {
            Directory.Delete(outDir, recursive: true);
        }
    }

    [DllImport("libtorch_cpu", EntryPoint = "mkl_serv_cpu_detect")]
    private static extern int MklCpuDetect();

    private static string CpuVendor() =>
        File.Exists("/proc/cpuinfo")
            ? File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("vendor_id", StringComparison.Ordinal)) ?? "vendor unknown"
            : "vendor unknown";

    private static string PackageNativeDir()
    {
        if (!OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture != Architecture.X64)
        {
            Assert.Inconclusive("x86-64 Linux only");
        }
        string root = Environment.GetEnvironmentVariable("NUGET_PACKAGES")
            ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        string dir = Path.Combine(root, "libtorch-cpu-linux-x64", "2.10.0", "runtimes", "linux-x64", "native");
        if (!File.Exists(Path.Combine(dir, "libc10.so")))
        {
            Assert.Inconclusive($"libtorch's package copy not found at {dir}");
        }
        return dir;
    }

    private static string NewOutputDir(string package, bool linkTorchCpu)
    {
        string dir = Path.Combine(Path.GetTempPath(), "onnxlora-mklcpu-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        // A hard link, as NuGet's restore leaves in a build output: the step must break it, not write through it.
        if (Run("ln", $"\"{Path.Combine(package, "libc10.so")}\" \"{Path.Combine(dir, "libc10.so")}\"").ExitCode != 0)
        {
            File.Copy(Path.Combine(package, "libc10.so"), Path.Combine(dir, "libc10.so"));
        }
        if (linkTorchCpu)
        {
            File.CreateSymbolicLink(Path.Combine(dir, "libtorch_cpu.so"), Path.Combine(package, "libtorch_cpu.so"));
        }
        return dir;
    }

    private static (int ExitCode, string Output) RunStep(string outDir) =>
        Run("bash", $"\"{Path.Combine(TorchSharpCompatTests.RepoRoot(), "build", "torchsharp-compat", "mkl_cpu.sh")}\" \"{outDir}\" \"{Path.Combine(outDir, "cache")}\"");

    private static (int ExitCode, string Output) Run(string file, string args) => TorchSharpCompatTests.Run(file, args);

    private static string Sha(string path) => TorchSharpCompatTests.Sha(path);
}
