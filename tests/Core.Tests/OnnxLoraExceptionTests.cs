namespace OnnxLora.Core.Tests;

[TestClass]
public sealed class OnnxLoraExceptionTests
{
    [TestMethod]
    public void Invalid_FormatsWhereWhatFoundExpected_AsBadInput()
    {
        var e = OnnxLoraException.Invalid("/m/config.json", "field 'r'", "0", "a positive integer");

        Assert.AreEqual("/m/config.json: field 'r': found 0, expected a positive integer.", e.Message);
        Assert.AreEqual(ErrorKind.BadInput, e.Kind);
        Assert.AreEqual("/m/config.json", e.Where);
    }

    [TestMethod]
    public void Describe_LeavesOutAnEmptyWhatOrWhereWithItsColon()
    {
        Assert.AreEqual("/m/a.onnx: found 3, expected 4.", OnnxLoraException.Describe("/m/a.onnx", "", "3", "4"));
        Assert.AreEqual("rank: found 0, expected 1.", OnnxLoraException.Describe("", "rank", "0", "1"));
        Assert.AreEqual("no where here", OnnxLoraException.Describe("", "no where here"));
        Assert.AreEqual("/m/a.onnx: truncated.", OnnxLoraException.Describe("/m/a.onnx", "truncated."));
    }

    [TestMethod]
    public void Invalid_FreeForm_KeepsTheInnerException()
    {
        var inner = new FormatException("bad number");
        var e = OnnxLoraException.Invalid("/d/data.jsonl", "line 3: not valid JSON (bad number)", inner);

        Assert.AreEqual("/d/data.jsonl: line 3: not valid JSON (bad number)", e.Message);
        Assert.AreSame(inner, e.InnerException);
        Assert.AreEqual(ErrorKind.BadInput, e.Kind);
    }

    [TestMethod]
    public void InvalidOption_NamesTheOption()
    {
        var found = OnnxLoraException.InvalidOption("Atol", "-1", "a finite number ≥ 0");
        var message = OnnxLoraException.InvalidOption("--mode", "unmerged needs an --adapter.");

        Assert.AreEqual("option Atol: found -1, expected a finite number ≥ 0.", found.Message);
        Assert.AreEqual("Atol", found.Where);
        Assert.AreEqual("option --mode: unmerged needs an --adapter.", message.Message);
        Assert.AreEqual(ErrorKind.BadInput, found.Kind);
        Assert.AreEqual(ErrorKind.BadInput, message.Kind);
    }

    [TestMethod]
    public void NotFoundAndOutputExists_NameThePathFirst()
    {
        var missing = OnnxLoraException.NotFound("adapter folder", "/a/lora");
        var exists = OnnxLoraException.OutputExists("/o/merged");
        var appeared = OnnxLoraException.OutputAppeared("/o/merged");

        Assert.AreEqual("/a/lora: adapter folder not found.", missing.Message);
        Assert.AreEqual("/o/merged: output exists; pass --force (overwrite) to replace it.", exists.Message);
        StringAssert.StartsWith(appeared.Message, "/o/merged: output appeared while writing;");
        Assert.IsTrue(new[] { missing, exists, appeared }.All(e => e.Kind == ErrorKind.BadInput));
    }

    [TestMethod]
    public void Internal_IsABugNotBadInput()
    {
        var e = OnnxLoraException.Internal("OnnxLora.Training", "embedded sample file 'config.json' is missing.");

        Assert.AreEqual(ErrorKind.Internal, e.Kind);
        Assert.AreEqual("OnnxLora.Training: embedded sample file 'config.json' is missing.", e.Message);
    }
}
