using System.Diagnostics;
using System.Security.Cryptography;
using OnnxLora.Core;
using OnnxLora.Core.Onnx;
using OnnxLora.Models.Onnx;
using static TorchSharp.torch;

namespace OnnxLora.Export.Tests;

[TestClass]
public sealed class ExporterBehaviourTests
{
    [TestMethod]
    [DataRow(OnnxExportMode.Merged)]
    [DataRow(OnnxExportMode.Unmerged)]
    public void Export_Twice_GivesIdenticalBytes(OnnxExportMode mode)
    {
        using var model = TestModels.Llama();
        TestModels.InjectLora(model, TestModels.LlamaTargets);
        string dir = TempDir();
        var options = new ExportOptions { Mode = mode, AdapterName = "demo" };

        OnnxExporter.Export(model, Path.Combine(dir, "a.onnx"), options);
        OnnxExporter.Export(model, Path.Combine(dir, "b.onnx"), options);

        CollectionAssert.AreEqual(File.ReadAllBytes(Path.Combine(dir, "a.onnx")), File.ReadAllBytes(Path.Combine(dir, "b.onnx")));
    }

    [TestMethod]
    public void Export_UnknownModuleType_ThrowsNamingPathAndType()
    {
        using var model = TestModels.Llama();
        TestModels.Replace(model.Model.Layers[1].Mlp, "down_proj", new Doubler());

        var e = BadInput.Throws(() => OnnxExporter.BuildModel(model, new ExportOptions { Mode = OnnxExportMode.Base }));
        StringAssert.Contains(e.Message, "model.layers.1.mlp.down_proj");
        StringAssert.Contains(e.Message, nameof(Doubler));
    }

    [TestMethod]
    public void Export_UserModuleImplementingIOnnxExportable_TakesPart()
    {
        using var model = TestModels.Llama();
        TestModels.Replace(model.Model.Layers[0].Mlp, "up_proj", new ExportableDoubler(model.Config.HiddenSize, model.Config.IntermediateSize));
        LlamaExportTests.AssertMatchesEager(model, new ExportOptions { Mode = OnnxExportMode.Base }, adaptersInExpected: false);
    }

    [TestMethod]
    public void Export_NonExportableModel_Throws()
    {
        using var model = new Doubler();
        var e = BadInput.Throws(() => OnnxExporter.BuildModel(model));
        StringAssert.Contains(e.Message, nameof(Doubler));
    }

    [TestMethod]
    [DataRow(16)]
    [DataRow(22)]
    public void Export_OpsetOutOfRange_Throws(int opset)
    {
        using var model = TestModels.Llama();
        var e = BadInput.Throws(() => OnnxExporter.BuildModel(model, new ExportOptions { Opset = opset }));
        StringAssert.Contains(e.Message, "17..21");
    }

    [TestMethod]
    public void Export_WritesMetadataWithAdapterFactsAndFileHashes()
    {
        using var model = TestModels.Llama();
        TestModels.InjectLora(model, ["q_proj", "v_proj"], rank: 4, alpha: 8);
        string dir = TempDir();
        string baseFile = Path.Combine(dir, "model.safetensors");
        string adapterFile = Path.Combine(dir, "adapter_model.safetensors");
        File.WriteAllText(baseFile, "base bytes");
        File.WriteAllText(adapterFile, "adapter bytes");
        var options = new ExportOptions { AdapterName = "my-adapter", BaseModelFiles = [baseFile], AdapterFiles = [adapterFile] };

        var result = OnnxExporter.Export(model, Path.Combine(dir, "model.onnx"), options);
        var proto = OnnxFile.Load(result.ModelPath);
        var meta = proto.MetadataProps.ToDictionary(m => m.Key, m => m.Value);

        Assert.AreEqual("OnnxLora", proto.ProducerName);
        Assert.AreEqual("my-adapter", meta["adapter_name"]);
        Assert.AreEqual("4", meta["lora_rank"]);
        Assert.AreEqual("8", meta["lora_alpha"]);
        Assert.AreEqual("2", meta["lora_scaling"]);
        Assert.AreEqual("merged", meta["onnxlora.mode"]);
        Assert.AreEqual("model.safetensors=" + Convert.ToHexStringLower(SHA256.HashData("base bytes"u8)), meta["base_sha256"]);
        Assert.AreEqual("adapter_model.safetensors=" + Convert.ToHexStringLower(SHA256.HashData("adapter bytes"u8)), meta["adapter_sha256"]);
        Assert.AreEqual(4, result.LoraLayerCount);
        Assert.IsNull(result.ExternalDataPath);
    }

    [TestMethod]
    public void Export_ExistingFile_ThrowsUnlessOverwrite()
    {
        using var model = TestModels.Llama();
        string path = Path.Combine(TempDir(), "model.onnx");
        File.WriteAllText(path, "keep");
        BadInput.Throws(() => OnnxExporter.Export(model, path));
        Assert.AreEqual("keep", File.ReadAllText(path));
        OnnxExporter.Export(model, path, new ExportOptions { Overwrite = true });
        Assert.AreNotEqual("keep", File.ReadAllText(path));
    }

    [TestMethod]
    public void Export_WithAlwaysExternalData_RunsFromTheFileInOrt()
    {
        using var model = TestModels.Llama();
        TestModels.InjectLora(model, TestModels.LlamaTargets);
        string path = Path.Combine(TempDir(), "model.onnx");
        var result = OnnxExporter.Export(model, path, new ExportOptions { Mode = OnnxExportMode.Unmerged, ExternalData = OnnxExternalData.Always });

        Assert.AreEqual(path + ".data", result.ExternalDataPath);
        Assert.IsGreaterThan(new FileInfo(path).Length, new FileInfo(path + ".data").Length);
        using var ort = OrtRunner.FromFile(path);
        long[] ids = TestModels.Ids(2, 5, 64, 1);
        long[] mask = TestModels.Ones(2, 5);
        float[] actual = ort.Run("logits", ("input_ids", ids, [2, 5]), ("attention_mask", mask, [2, 5])).Data;
        Assert.IsLessThan(1e-4, Reference.MaxAbsDiff(actual, TestModels.Eager(model, ids, mask, 2, 5)));
    }

    [TestMethod]
    public void OnnxChecker_FullCheck_AcceptsOpset17Exports()
    {
        if (!PythonOnnxAvailable())
        {
            Assert.Inconclusive("python3-onnx is not installed (apt-get install -y python3-onnx).");
        }
        string dir = TempDir();
        using var llama = TestModels.Llama();
        TestModels.InjectLora(llama, TestModels.LlamaTargets);
        using var bert = TestModels.Bert();
        TestModels.InjectLora(bert, TestModels.BertTargets);
        var files = new List<string>();
        foreach (var mode in new[] { OnnxExportMode.Merged, OnnxExportMode.Unmerged })
        {
            files.Add(OnnxExporter.Export(llama, Path.Combine(dir, $"llama-{mode}.onnx"), new ExportOptions { Mode = mode }).ModelPath);
            files.Add(OnnxExporter.Export(bert, Path.Combine(dir, $"bert-{mode}.onnx"), new ExportOptions { Mode = mode }).ModelPath);
        }
        files.Add(OnnxExporter.Export(llama, Path.Combine(dir, "llama-fp16-ext.onnx"),
            new ExportOptions { WeightType = DType.F16, ExternalData = OnnxExternalData.Always }).ModelPath);

        foreach (string file in files)
        {
            var (code, output) = RunPython($"import onnx, sys; onnx.checker.check_model(sys.argv[1], full_check=True); print('ok')", file);
            Assert.AreEqual(0, code, $"{Path.GetFileName(file)}: {output}");
        }
    }

    private static bool PythonOnnxAvailable() => File.Exists("/usr/bin/python3") && RunPython("import onnx").Code == 0;

    private static (int Code, string Output) RunPython(string code, params string[] args)
    {
        var start = new ProcessStartInfo("/usr/bin/python3") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add("-c");
        start.ArgumentList.Add(code);
        foreach (string a in args)
        {
            start.ArgumentList.Add(a);
        }
        using var process = Process.Start(start)!;
        string output = process.StandardOutput.ReadToEnd() + process.StandardError.ReadToEnd();
        process.WaitForExit();
        return (process.ExitCode, output);
    }

    private static string TempDir()
    {
        string dir = Path.Combine(Path.GetTempPath(), "onnxlora-export-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        return dir;
    }

    /// <summary>A module the exporter does not know.</summary>
    private sealed class Doubler : nn.Module<Tensor, Tensor>
    {
        public Doubler() : base(nameof(Doubler))
        {
        }

        public override Tensor forward(Tensor input) => input * 2;
    }

    /// <summary>A user module that emits itself: y = 2·(x·Wᵀ) with its own weight.</summary>
    private sealed class ExportableDoubler : nn.Module<Tensor, Tensor>, IOnnxExportable
    {
        private readonly TorchSharp.Modules.Parameter _weight;

        public ExportableDoubler(long inFeatures, long outFeatures) : base(nameof(ExportableDoubler))
        {
            _weight = new TorchSharp.Modules.Parameter(randn(outFeatures, inFeatures, generator: new Generator(3)) * 0.2);
            RegisterComponents();
        }

        public override Tensor forward(Tensor input) => nn.functional.linear(input, _weight) * 2;

        public string EmitOnnx(OnnxEmitContext context, string input) =>
            context.Op("Mul", context.Linear(input, _weight, null), context.Scalar(2f));
    }
}
