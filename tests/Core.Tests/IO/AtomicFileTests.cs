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

        BadInput.Throws(() => AtomicFile.Create(path));

        using var file = AtomicFile.Create(path, overwrite: true);
        file.Stream.Write("new"u8);
        Assert.AreEqual("old", File.ReadAllText(path));
        file.Commit();
        Assert.AreEqual("new", File.ReadAllText(path));
    }
}

[TestClass]
public sealed class AtomicDirectoryTests
{
    [TestMethod]
    public void Commit_MovesWholeFolderIntoPlace_ReplacingOldOnlyWithOverwrite()
    {
        using var dir = new TempDir();
        string final = dir.File("ckpt");
        using (var first = AtomicDirectory.Create(final))
        {
            File.WriteAllText(first.File("a.txt"), "1");
            Assert.IsFalse(Directory.Exists(final));
            first.Commit();
        }
        Assert.AreEqual("1", File.ReadAllText(Path.Combine(final, "a.txt")));

        BadInput.Throws(() => AtomicDirectory.Create(final));
        using (var second = AtomicDirectory.Create(final, overwrite: true))
        {
            File.WriteAllText(second.File("b.txt"), "2");
            second.Commit();
        }
        CollectionAssert.AreEquivalent(new[] { "b.txt" }, Directory.GetFiles(final).Select(Path.GetFileName).ToArray());
        CollectionAssert.AreEquivalent(new[] { "ckpt" }, Directory.GetFileSystemEntries(dir.Path).Select(Path.GetFileName).ToArray());
    }

    [TestMethod]
    public void Dispose_WithoutCommit_RemovesEverything()
    {
        using var dir = new TempDir();
        using (var out1 = AtomicDirectory.Create(dir.File("x")))
        {
            File.WriteAllText(out1.File("part"), "half");
        }
        Assert.IsEmpty(Directory.GetFileSystemEntries(dir.Path));
    }
}

[TestClass]
public sealed class OutputLockTests
{
    [TestMethod]
    public void Acquire_SecondHolder_GetsClearErrorUntilReleased()
    {
        using var dir = new TempDir();
        string output = dir.File("model.onnx");
        using (OutputLock.Acquire(output))
        {
            // FileShare.None locks are per open file description; a second open in this process is refused like another process's.
            var e = BadInput.Throws(() => OutputLock.Acquire(output));
            StringAssert.Contains(e.Message, "model.onnx");
            StringAssert.Contains(e.Message, "another merge-export process");
        }
        using var again = OutputLock.Acquire(output);
        Assert.IsTrue(File.Exists(again.LockPath));
    }
}
