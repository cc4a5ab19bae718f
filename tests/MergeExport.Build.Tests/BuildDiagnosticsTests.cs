using OnnxLora.MergeExport.Build.Internals;

namespace OnnxLora.MergeExport.Build.Tests;

[TestClass]
public sealed class BuildDiagnosticsTests
{
    [TestMethod]
    public void GateFailure_UpperBoundGate_SaysValueAboveLimitAndWhereTheReportIs()
    {
        var gate = new GateFailure("max-latency-ratio", null, "1.21", "1.05", null);

        string message = BuildDiagnostics.GateFailure("adapters/x", gate, "out/x.onnx.report/validation.md");

        Assert.AreEqual("LoRA adapter 'adapters/x': validation gate max-latency-ratio failed: 1.21 > 1.05 (see out/x.onnx.report/validation.md)", message);
    }

    [TestMethod]
    public void GateFailure_LowerBoundGateOnAnOutput_SaysValueBelowLimitAndNamesTheOutput()
    {
        var gate = new GateFailure("min-top1", "logits", "0.97", "0.99", "top-1 agreement 97%");

        string message = BuildDiagnostics.GateFailure("adapters/x", gate, null);

        Assert.AreEqual("LoRA adapter 'adapters/x': validation gate min-top1 on output 'logits' failed: 0.97 < 0.99 (top-1 agreement 97%)", message);
    }

    [TestMethod]
    public void NoJsonResult_NamesExitCodeWhatWasFoundAndTheLastMessage()
    {
        string message = BuildDiagnostics.NoJsonResult("adapters/x", 2, "", "merge-export: Unrecognized command 'run'");

        StringAssert.Contains(message, "LoRA adapter 'adapters/x'");
        StringAssert.Contains(message, "exited with code 2");
        StringAssert.Contains(message, "found nothing on stdout");
        StringAssert.Contains(message, "Unrecognized command 'run'");
    }

    [TestMethod]
    public void Escape_MakesSpecialCharactersLiteral()
    {
        Assert.AreEqual("a%3Bb%25c%24d%40e%27f%2Ag%3F", MSBuildText.Escape("a;b%c$d@e'f*g?"));
        Assert.AreEqual("/plain/path.onnx", MSBuildText.Escape("/plain/path.onnx"));
    }
}
