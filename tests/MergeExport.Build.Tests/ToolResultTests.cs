using OnnxLora.MergeExport.Build.Internals;

namespace OnnxLora.MergeExport.Build.Tests;

[TestClass]
public sealed class ToolResultTests
{
    [TestMethod]
    public void TryParse_Passed_ReadsStatusAndOutputs()
    {
        const string Json = """{"command":"run","status":"passed","outputs":{"merged":"/o/merged.onnx","unmerged":"/o/unmerged.onnx","base":"/o/base.onnx","reportJson":"/o/report/validation.json","reportMarkdown":"/o/report/validation.md","reportHtml":"/o/report/validation.html"},"failedGates":[],"error":null}""";

        ToolResult? result = ToolResult.TryParse(Json + "\n");

        Assert.IsNotNull(result);
        Assert.AreEqual("passed", result.Status);
        Assert.AreEqual("/o/merged.onnx", result.Merged);
        Assert.AreEqual("/o/report/validation.md", result.ReportMarkdown);
        Assert.AreEqual("/o/report/validation.html", result.ReportHtml);
        Assert.IsEmpty(result.FailedGates);
        Assert.IsNull(result.Error);
    }

    [TestMethod]
    public void TryParse_GateFailed_KeepsNumbersAsTheToolWroteThem()
    {
        const string Json = """{"command":"run","status":"gate-failed","outputs":{},"failedGates":[{"gate":"max-latency-ratio","output":null,"value":1.21,"limit":1.05,"message":"slow"},{"gate":"atol","output":"logits","value":3E-3,"limit":1e-4,"message":""}],"error":null}""";

        ToolResult? result = ToolResult.TryParse(Json);

        Assert.IsNotNull(result);
        Assert.AreEqual("gate-failed", result.Status);
        Assert.HasCount(2, result.FailedGates);
        Assert.AreEqual(new GateFailure("max-latency-ratio", null, "1.21", "1.05", "slow"), result.FailedGates[0]);
        Assert.AreEqual(new GateFailure("atol", "logits", "3E-3", "1e-4", ""), result.FailedGates[1]);
    }

    [TestMethod]
    public void TryParse_Error_ReadsTheMessage()
    {
        ToolResult? result = ToolResult.TryParse("""{"command":"run","status":"error","outputs":null,"failedGates":[],"error":"x.safetensors: header: found 3 bytes, expected at least 8."}""");

        Assert.IsNotNull(result);
        Assert.AreEqual("error", result.Status);
        Assert.AreEqual("x.safetensors: header: found 3 bytes, expected at least 8.", result.Error);
        Assert.IsNull(result.Merged);
    }

    [TestMethod]
    [DataRow("")]
    [DataRow("Unhandled exception.")]
    [DataRow("{\"command\":\"run\"}")]
    [DataRow("{\"status\":3}")]
    [DataRow("{\"status\":\"passed\"")]
    [DataRow("[{\"status\":\"passed\"}]")]
    public void TryParse_NotAResultObject_ReturnsNull(string stdout)
    {
        Assert.IsNull(ToolResult.TryParse(stdout));
    }

    [TestMethod]
    [DataRow("merge-export run: error: /a/adapter_config.json: not valid JSON (x)", "/a/adapter_config.json: not valid JSON (x)")]
    [DataRow("merge-export validate: error: --unmerged is required: x.", "--unmerged is required: x.")]
    [DataRow("  merge-export run: error: internal error: boom (this is a bug) ", "internal error: boom (this is a bug)")]
    public void ErrorMessageOf_ToolErrorLine_ReturnsTheMessageWithoutThePrefix(string line, string expected)
    {
        Assert.AreEqual(expected, ToolResult.ErrorMessageOf(line));
    }

    [TestMethod]
    [DataRow("merge-export: Unrecognized command or argument '--bogus'. (see merge-export --help)")]
    [DataRow("[3/5] merging adapter into model: error: none")]
    [DataRow("merge-export run: cancelled; no partial outputs were left.")]
    [DataRow("")]
    public void ErrorMessageOf_OtherLines_ReturnsNull(string line)
    {
        Assert.IsNull(ToolResult.ErrorMessageOf(line));
    }

    [TestMethod]
    public void TryParse_RunWithAdapterOutputs_ReadsThem_AndTheSkipWarningGivesItsReason()
    {
        ToolResult? result = ToolResult.TryParse("""{"command":"run","status":"passed","outputs":{"merged":"/o/merged.onnx","adapters":"/o/adapters.onnx","onnxAdapter":"/o/a.onnx_adapter"},"failedGates":[],"error":null}""");
        Assert.IsNotNull(result);
        Assert.AreEqual("/o/adapters.onnx", result.AdaptersModel);
        Assert.AreEqual("/o/a.onnx_adapter", result.OnnxAdapter);
        Assert.AreEqual("a: modules_to_save", ToolResult.AdapterSkipReasonOf("warning: skipping the ONNX Runtime adapters graph: a: modules_to_save"));
        Assert.IsNull(ToolResult.AdapterSkipReasonOf("warning: something else"));
    }
}
