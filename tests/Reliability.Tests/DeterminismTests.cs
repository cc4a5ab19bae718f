namespace OnnxLora.Reliability.Tests;

/// <summary>The same command with the same inputs writes the same bytes, run after run.</summary>
[TestClass]
public sealed class DeterminismTests
{
    [TestMethod]
    public void Merge_Twice_WritesByteIdenticalCheckpoints()
    {
        using var dir = new TempDir();
        AssertSameBytesTwice(dir, "merged", o => ["merge", "--model", Tool.TinyLlama, "--adapter", Tool.TinyLlamaLora, "--out", o]);
    }

    [TestMethod]
    public void Export_Twice_WritesByteIdenticalOnnx()
    {
        using var dir = new TempDir();
        AssertSameBytesTwice(dir, "m.onnx", o => ["export", "--model", Tool.TinyLlama, "--adapter", Tool.TinyLlamaLora, "--mode", "merged", "--out", o]);
    }

    [TestMethod]
    public void Train_ThreeStepsSameSeed_Twice_WritesByteIdenticalAdapters()
    {
        using var dir = new TempDir();
        AssertSameBytesTwice(dir, "adapter", o => ["train", "--model", Tool.TinyLlama, "--data", Path.Combine(Tool.TinyLlama, "task.jsonl"), "--steps", "3", "--seed", "1", "--out", o]);
    }

    private static void AssertSameBytesTwice(TempDir dir, string name, Func<string, string[]> args)
    {
        string first = Path.Combine(dir.File("1"), name);
        string second = Path.Combine(dir.File("2"), name);
        foreach (string output in new[] { first, second })
        {
            var run = Tool.Run(args(output));
            Assert.AreEqual(0, run.ExitCode, run.ToString());
        }

        var a = Snapshot.Of(first);
        var b = Snapshot.Of(second);
        Assert.IsGreaterThan(0, a.FileCount);
        var differing = Snapshot.Differences(a, b).ToList();
        Assert.IsEmpty(differing, $"files that differ: {string.Join(", ", differing)}");
    }
}
