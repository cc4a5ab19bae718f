using OnnxLora.Core.IO;

namespace OnnxLora.Core.Tests.IO;

[TestClass]
public sealed class AtomicFileTests
{
    [TestMethod]
    public void Commit_MakesFileAppearOnlyThen()
    {
        using var dir = new TempDir();
        string path = dir.File("out.bin");
        using var file = AtomicFile.Create(path);
        file.Stream.Write([1, 2, 3]);

        Assert.IsFalse(File.Exists(path));
        StringAssert.StartsWith(Path.GetFileName(file.TempPath), ".out.bin.");
        file.Commit();

        CollectionAssert.AreEqual(new byte[] { 1, 2, 3 }, File.ReadAllBytes(path));
        Assert.HasCount(1, Directory.GetFiles(dir.Path));
    }

    [TestMethod]
    public void Dispose_WithoutCommit_LeavesNothing()
    {
        using var dir = new TempDir();
        string path = dir.File("out.bin");
        using (var file = AtomicFile.Create(path))
        {
            file.Stream.Write(new byte[1000]);
        }
        Assert.IsEmpty(Directory.GetFiles(dir.Path));
    }

    [TestMethod]
    public void Create_ExistingOutput_ThrowsUnlessOverwrite()
    {
        using var dir = new TempDir();
        string path = dir.File("out.bin");
        File.WriteAllText(path, "old");

        Assert.ThrowsExactly<IOException>(() => AtomicFile.Create(path));

        using var file = AtomicFile.Create(path, overwrite: true);
        file.Stream.Write("new"u8);
        Assert.AreEqual("old", File.ReadAllText(path));
        file.Commit();
        Assert.AreEqual("new", File.ReadAllText(path));
    }
}
