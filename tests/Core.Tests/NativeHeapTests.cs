using System.Runtime.InteropServices;

namespace OnnxLora.Core.Tests;

[TestClass]
public sealed class NativeHeapTests
{
    [TestMethod]
    public void UseFixedMmapThreshold_OnLinuxGlibc_IsTakenByTheCLibrary()
    {
        // This machine (and CI) is Debian 12, glibc: mallopt(M_MMAP_THRESHOLD, 1 MiB) must succeed (a wrong parameter number,
        // e.g. M_TRIM_THRESHOLD's -1 or a positive constant that glibc does not know, would return 0 or not change the threshold).
        Assert.IsTrue(OperatingSystem.IsLinux());
        Assert.IsTrue(NativeHeap.UseFixedMmapThreshold());
    }

    [TestMethod]
    public void UseFixedMmapThreshold_RejectsANonPositiveSize()
    {
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => NativeHeap.UseFixedMmapThreshold(0));
    }

    /// <summary>
    /// The variable must land in the C library's environment, which libtorch's allocator reads with getenv (.NET's
    /// Environment.SetEnvironmentVariable would not put it there), and must not override a value the user set.
    /// One test method for both cases: they share the process environment. Core.Tests never loads libtorch.
    /// </summary>
    [TestMethod]
    public void UseHugePagesForTorchBuffers_SetsTheCVariable_AndKeepsAnExplicitValue()
    {
        Assert.IsTrue(OperatingSystem.IsLinux());
        string name = NativeHeap.TorchHugePagesVariable;
        try
        {
            Assert.AreEqual(0, UnsetEnv(name));
            Assert.IsTrue(NativeHeap.UseHugePagesForTorchBuffers());
            Assert.AreEqual("1", Marshal.PtrToStringUTF8(GetEnv(name)));

            Assert.AreEqual(0, SetEnv(name, "0", 1));
            Assert.IsTrue(NativeHeap.UseHugePagesForTorchBuffers());
            Assert.AreEqual("0", Marshal.PtrToStringUTF8(GetEnv(name)));
        }
        finally
        {
            UnsetEnv(name);
        }
    }

    // DllImport rather than LibraryImport: this test project does not allow unsafe code. Strings go as UTF-8 on Unix.
    [DllImport("libc", EntryPoint = "getenv")]
    private static extern nint GetEnv(string name);

    [DllImport("libc", EntryPoint = "setenv")]
    private static extern int SetEnv(string name, string value, int overwrite);

    [DllImport("libc", EntryPoint = "unsetenv")]
    private static extern int UnsetEnv(string name);
}
