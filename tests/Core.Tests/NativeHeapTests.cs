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
}
