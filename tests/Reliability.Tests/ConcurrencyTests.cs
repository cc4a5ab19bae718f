using OnnxLora.Core.IO;

namespace OnnxLora.Reliability.Tests;

/// <summary>Several merge-export processes at once: same output (one waits its turn or is told why), or different work (both succeed).</summary>
[TestClass]
public sealed class ConcurrencyTests
{
    private const string LockMessage = "another merge-export process is writing this output";

    [TestMethod]
    [DataRow("export")]
    [DataRow("merge")]
    public void OutputLockedByAnotherProcess_ExitsTwoNamingTheLock_ThenSucceedsOnceReleased(string command)
    {
        using var dir = new TempDir();
        string output = dir.File(command == "export" ? "m.onnx" : "merged");
        string[] args = command == "export"
            ? ["export", "--model", Tool.TinyLlama, "--adapter", Tool.TinyLlamaLora, "--mode", "merged", "--out", output]
            : ["merge", "--model", Tool.TinyLlama, "--adapter", Tool.TinyLlamaLora, "--out", output];

        using (var held = OutputLock.Acquire(output))
        {
            var blocked = Tool.Run(args);

            Assert.AreEqual(2, blocked.ExitCode, blocked.ToString());
            Assert.HasCount(1, blocked.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries), blocked.Err);
            StringAssert.Contains(blocked.Err, LockMessage);
            StringAssert.Contains(blocked.Err, held.LockPath);
            Assert.IsFalse(File.Exists(output) || Directory.Exists(output), "nothing written while locked");
        }

        var after = Tool.Run(args);
        Assert.AreEqual(0, after.ExitCode, after.ToString());
        Assert.IsTrue(File.Exists(output) || Directory.Exists(output));
        Assert.IsFalse(File.Exists(Path.Combine(dir.Path, $".{Path.GetFileName(output)}.lock")), "the lock file is removed when released");
    }

    [TestMethod]
    public void TwoExportsToOneOutput_StartedTogether_OneWinsOrBothInTurn_OutputComplete()
    {
        using var dir = new TempDir();
        string reference = dir.File("reference.onnx");
        string output = dir.File("m.onnx");
        string[] Args(string o) => ["export", "--model", Tool.TinyLlama, "--adapter", Tool.TinyLlamaLora, "--mode", "merged", "--out", o, "--force"];
        Assert.AreEqual(0, Tool.Run(Args(reference)).ExitCode);

        using var first = Tool.Start(Args(output));
        using var second = Tool.Start(Args(output));
        var runs = new[] { first.WaitForExit(TimeSpan.FromMinutes(2)), second.WaitForExit(TimeSpan.FromMinutes(2)) };

        foreach (var run in runs)
        {
            Assert.IsTrue(run.ExitCode == 0 || (run.ExitCode == 2 && run.Err.Contains(LockMessage, StringComparison.Ordinal)), run.ToString());
        }
        Assert.IsTrue(runs.Any(r => r.ExitCode == 0), "at least one export succeeds");
        CollectionAssert.AreEqual(File.ReadAllBytes(reference), File.ReadAllBytes(output), "the output is one complete export");
        Assert.IsEmpty(Directory.GetFiles(dir.Path, ".m.onnx*"), "no temp or lock files left");
    }

    [TestMethod]
    public void TwoValidatesOnDifferentModels_AtOnce_BothPassWithTheirOwnReports()
    {
        using var dir = new TempDir();
        var pairs = new[] { 17, 18 }.Select(opset =>
        {
            string merged = dir.File($"merged{opset}.onnx");
            string unmerged = dir.File($"unmerged{opset}.onnx");
            foreach (var (mode, path) in new[] { ("merged", merged), ("unmerged", unmerged) })
            {
                var export = Tool.Run("export", "--model", Tool.TinyLlama, "--adapter", Tool.TinyLlamaLora, "--mode", mode, "--opset", opset.ToString(System.Globalization.CultureInfo.InvariantCulture), "--out", path);
                Assert.AreEqual(0, export.ExitCode, export.ToString());
            }
            return (Merged: merged, Unmerged: unmerged, Report: dir.File($"report{opset}"));
        }).ToArray();
        CollectionAssert.AreNotEqual(File.ReadAllBytes(pairs[0].Merged), File.ReadAllBytes(pairs[1].Merged), "two different models");

        var started = pairs.Select(p => Tool.Start(["validate", "--merged", p.Merged, "--unmerged", p.Unmerged, "--device", "cpu", "--runs", "3", "--warmup", "1", "--report", p.Report])).ToArray();
        var runs = started.Select(s => s.WaitForExit(TimeSpan.FromMinutes(2))).ToArray();
        foreach (var s in started)
        {
            s.Dispose();
        }

        for (int i = 0; i < pairs.Length; i++)
        {
            Assert.AreEqual(0, runs[i].ExitCode, runs[i].ToString());
            string json = File.ReadAllText(Path.Combine(pairs[i].Report, "validation.json"));
            StringAssert.Contains(json, Path.GetFileName(pairs[i].Merged));
            Assert.DoesNotContain(Path.GetFileName(pairs[1 - i].Merged), json, "each report describes its own models");
        }
    }
}
