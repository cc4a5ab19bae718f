using System.Text.Json;
using OnnxLora.Core;
using OnnxLora.Core.Onnx;
using OnnxLora.Core.Safetensors;

namespace OnnxLora.MergeExport.Tests;

[TestClass]
public sealed class InspectCommandTests
{
    [TestMethod]
    public void Inspect_Safetensors_ListsTensorsAsTextAndJson()
    {
        using var dir = new TempDir();
        string path = dir.File("w.safetensors");
        SafetensorsWriter.Save(path, [(new TensorSpec("layer.weight", DType.F16, [3, 2]), new byte[12])]);

        var (code, text, _) = CliHarness.Run("inspect", path);
        Assert.AreEqual(0, code);
        StringAssert.Contains(text, "layer.weight");
        StringAssert.Contains(text, "[3, 2]");

        var (jcode, json, _) = CliHarness.Run("inspect", path, "--json");
        Assert.AreEqual(0, jcode);
        using var doc = JsonDocument.Parse(json);
        var t = doc.RootElement.GetProperty("tensors")[0];
        Assert.AreEqual("F16", t.GetProperty("dtype").GetString());
        Assert.AreEqual(3, t.GetProperty("shape")[0].GetInt64());
    }

    [TestMethod]
    public void Inspect_OnnxModel_ShowsInputsOutputsAndOps()
    {
        using var dir = new TempDir();
        var b = new OnnxGraphBuilder(17);
        string x = b.AddInput("x", DType.F32, "batch", 2);
        string w = b.AddInitializer("w", DType.F32, [2, 2], [1f, 0f, 0f, 1f]);
        b.AddNode("MatMul", [x, w], ["y"], "mm");
        b.AddOutput("y", DType.F32, "batch", 2);
        string path = dir.File("m.onnx");
        OnnxFile.Save(b.Build(), path);

        var (code, json, err) = CliHarness.Run("inspect", path, "--json");

        Assert.AreEqual(0, code, err);
        using var doc = JsonDocument.Parse(json);
        Assert.AreEqual("onnx", doc.RootElement.GetProperty("kind").GetString());
        Assert.AreEqual("x", doc.RootElement.GetProperty("inputs")[0].GetProperty("name").GetString());
        Assert.AreEqual("[batch, 2]", doc.RootElement.GetProperty("inputs")[0].GetProperty("shape").GetString());
        Assert.AreEqual("MatMul", doc.RootElement.GetProperty("ops")[0].GetProperty("op").GetString());
    }

    [TestMethod]
    public void Inspect_OnnxAdapter_ListsParametersAndRejectsAForgedFileWithOneLine()
    {
        using var dir = new TempDir();
        string path = dir.File("a.onnx_adapter");
        OnnxAdapterFile.Write(path, [new OnnxAdapterParameter("m.lora_A.weight", DType.F16, [4, 2], new byte[16])], adapterVersion: 2);

        var (code, json, err) = CliHarness.Run("inspect", path, "--json");
        Assert.AreEqual(0, code, err);
        using var doc = JsonDocument.Parse(json);
        Assert.AreEqual("onnx_adapter", doc.RootElement.GetProperty("kind").GetString());
        Assert.AreEqual(2, doc.RootElement.GetProperty("adapterVersion").GetInt32());
        var p = doc.RootElement.GetProperty("parameters")[0];
        Assert.AreEqual("m.lora_A.weight", p.GetProperty("name").GetString());
        Assert.AreEqual("F16", p.GetProperty("dtype").GetString());
        Assert.AreEqual(2, p.GetProperty("shape")[1].GetInt64());

        byte[] bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..(bytes.Length / 2)]);
        var (badCode, output, badErr) = CliHarness.Run("inspect", path);
        Assert.AreEqual(2, badCode);
        Assert.AreEqual(string.Empty, output);
        Assert.AreEqual(1, badErr.Trim().Split('\n').Length, badErr);
        StringAssert.Contains(badErr, "a.onnx_adapter");
    }

    [TestMethod]
    public void Inspect_MissingPath_ExitsTwoWithOneLine()
    {
        var (code, output, err) = CliHarness.Run("inspect", "/nonexistent/model.onnx");
        Assert.AreEqual(2, code);
        Assert.AreEqual(string.Empty, output);
        Assert.AreEqual(1, err.Trim().Split('\n').Length, err);
        StringAssert.Contains(err, "/nonexistent/model.onnx");
    }

    [TestMethod]
    public void Inspect_CorruptSafetensors_ExitsTwoNamingTheFile()
    {
        using var dir = new TempDir();
        string path = dir.File("bad.safetensors");
        File.WriteAllBytes(path, [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F, (byte)'{']);
        var (code, _, err) = CliHarness.Run("inspect", path);
        Assert.AreEqual(2, code);
        StringAssert.Contains(err, "bad.safetensors");
        StringAssert.Contains(err, "header length");
        Assert.DoesNotContain("   at ", err, "no stack trace without --verbose");
    }

    [TestMethod]
    public void Inspect_CorruptOnnx_ExitsTwoNamingTheFile()
    {
        using var dir = new TempDir();
        string path = dir.File("bad.onnx");
        File.WriteAllBytes(path, [0x0A, 0xFF, 0xFF, 0xFF, 0x0F, 1, 2, 3]);
        var (code, _, err) = CliHarness.Run("inspect", path);
        Assert.AreEqual(2, code);
        StringAssert.Contains(err, "bad.onnx");
    }

    [TestMethod]
    public void Inspect_Verbose_AddsStackTrace()
    {
        var (code, _, err) = CliHarness.Run("inspect", "/nonexistent/x.safetensors", "--verbose");
        Assert.AreEqual(2, code);
        StringAssert.Contains(err, "   at ");
    }

    [TestMethod]
    public void UnknownCommandOrOption_ExitsTwo()
    {
        Assert.AreEqual(2, CliHarness.Run("frobnicate").ExitCode);
        Assert.AreEqual(2, CliHarness.Run("inspect", "x", "--no-such-option").ExitCode);
    }
}
