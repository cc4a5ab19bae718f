using OnnxLora.Core.IO;

namespace OnnxLora.Core.Tests.IO;

[TestClass]
public sealed class DiskSpaceTests
{
    [TestMethod]
    public void EnsureAvailable_MoreThanFree_ThrowsNamingPathWhatAndMount()
    {
        using var dir = new TempDir();
        string output = dir.File("merged");
        var free = DiskSpace.FreeBytes(output);
        Assert.IsNotNull(free, "the temp folder's drive should be found");

        var e = BadInput.Throws(() => DiskSpace.EnsureAvailable(output, long.MaxValue, "the merged checkpoint"));

        StringAssert.StartsWith(e.Message, output + ": writing the merged checkpoint needs ");
        StringAssert.Contains(e.Message, long.MaxValue.ToString("N0", System.Globalization.CultureInfo.InvariantCulture));
        StringAssert.Contains(e.Message, " are free on " + free.Value.Mount);
        Assert.IsFalse(Directory.Exists(output), "the check writes nothing");
    }

    [TestMethod]
    public void EnsureAvailable_SmallRequest_Passes()
    {
        using var dir = new TempDir();
        DiskSpace.EnsureAvailable(dir.File("m.onnx"), 1, "the ONNX model");
        DiskSpace.EnsureAvailable(dir.File("m.onnx"), 0, "nothing");
    }

    [TestMethod]
    public void FreeBytes_PicksInnermostMountHoldingThePath()
    {
        using var dir = new TempDir();
        var (free, mount) = DiskSpace.FreeBytes(dir.Path)!.Value;

        Assert.IsGreaterThan(0L, free);
        string root = mount.TrimEnd(Path.DirectorySeparatorChar);
        Assert.IsTrue(root.Length == 0 || dir.Path.StartsWith(root + Path.DirectorySeparatorChar, StringComparison.Ordinal),
            $"{mount} should hold {dir.Path}");
        // No other drive root is a longer prefix of the path.
        foreach (var d in DriveInfo.GetDrives())
        {
            string other = d.RootDirectory.FullName.TrimEnd(Path.DirectorySeparatorChar);
            if (other.Length > root.Length)
            {
                Assert.IsFalse(dir.Path.StartsWith(other + Path.DirectorySeparatorChar, StringComparison.Ordinal),
                    $"{other} is a closer mount of {dir.Path} than {mount}");
            }
        }
    }

    [TestMethod]
    public void FreeBytes_ForNotYetCreatedPath_UsesTheEnclosingMount()
    {
        using var dir = new TempDir();
        var existing = DiskSpace.FreeBytes(dir.Path)!.Value;
        var missing = DiskSpace.FreeBytes(Path.Combine(dir.Path, "a", "b", "c.onnx"))!.Value;
        Assert.AreEqual(existing.Mount, missing.Mount);
    }
}
