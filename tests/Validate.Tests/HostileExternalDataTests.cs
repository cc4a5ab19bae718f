using Google.Protobuf;
using Onnx;
using OnnxLora.Core;

namespace OnnxLora.Validate.Tests;

/// <summary>
/// Models whose external data points where it must not, validated through the library (<see cref="Validator.Run"/>,
/// as a program embedding Validate calls it, with no command in front): each is bad input naming the model file and
/// the external_data field, before ONNX Runtime opens anything the model names. The outside targets hold data of the
/// right size, so a validation that followed them would succeed instead of throwing.
/// </summary>
[TestClass]
public sealed class HostileExternalDataTests
{
    private const int WeightBytes = 16 * 48 * 4;

    [TestMethod]
    public void Run_ExternalDataAtAnAbsolutePath_IsBadInput()
    {
        using var f = new TestFiles();
        string outside = OutsideFile(f);
        string merged = Hostile(f, ("location", outside), ("offset", "0"), ("length", $"{WeightBytes}"));

        var e = AssertRejected(f, merged);
        StringAssert.Contains(e.Message, "an absolute path");
    }

    [TestMethod]
    public void Run_ExternalDataAtEtcPasswd_IsBadInput()
    {
        using var f = new TestFiles();
        string merged = Hostile(f, ("location", "/etc/passwd"), ("offset", "0"));

        var e = AssertRejected(f, merged);
        StringAssert.Contains(e.Message, "'/etc/passwd'");
    }

    [TestMethod]
    public void Run_ExternalDataOutsideTheFolderThroughDotDot_IsBadInput()
    {
        using var f = new TestFiles();
        OutsideFile(f);
        string merged = Hostile(f, ("location", "../outside.bin"), ("offset", "0"), ("length", $"{WeightBytes}"));

        var e = AssertRejected(f, merged);
        StringAssert.Contains(e.Message, "'..' segment");
    }

    [TestMethod]
    public void Run_ExternalDataThroughASymbolicLinkOutOfTheFolder_IsBadInput()
    {
        using var f = new TestFiles();
        File.CreateSymbolicLink(Path.Combine(ModelDir(f), "w.bin"), OutsideFile(f));
        string merged = Hostile(f, ("location", "w.bin"), ("offset", "0"), ("length", $"{WeightBytes}"));

        var e = AssertRejected(f, merged);
        StringAssert.Contains(e.Message, "symbolic link");
    }

    [TestMethod]
    public void Run_ExternalDataWithoutLocation_IsBadInput()
    {
        using var f = new TestFiles();
        File.WriteAllBytes(Path.Combine(ModelDir(f), "merged.onnx.data"), WeightBytesOf(f));
        string merged = Hostile(f, ("offset", "0"), ("length", $"{WeightBytes}"));

        var e = AssertRejected(f, merged);
        StringAssert.Contains(e.Message, "no 'location' entry");
    }

    [TestMethod]
    [DataRow("-4")]
    [DataRow("-9223372036854775808")]
    public void Run_ExternalDataWithANegativeOffset_IsBadInput(string offset)
    {
        using var f = new TestFiles();
        File.WriteAllBytes(Path.Combine(ModelDir(f), "w.bin"), new byte[2 * WeightBytes]);
        string merged = Hostile(f, ("location", "w.bin"), ("offset", offset), ("length", $"{WeightBytes}"));

        var e = AssertRejected(f, merged);
        StringAssert.Contains(e.Message, "external_data offset");
        StringAssert.Contains(e.Message, $"'{offset}'");
    }

    [TestMethod]
    public void Run_ExternalDataPastTheEndOfItsFile_IsBadInput()
    {
        using var f = new TestFiles();
        File.WriteAllBytes(Path.Combine(ModelDir(f), "w.bin"), new byte[WeightBytes]);
        string merged = Hostile(f, ("location", "w.bin"), ("offset", "4"), ("length", $"{WeightBytes}"));

        var e = AssertRejected(f, merged);
        StringAssert.Contains(e.Message, "offset + length");
    }

    [TestMethod]
    public void Run_HostileUnmergedOrBaseModel_IsBadInputToo()
    {
        using var f = new TestFiles();
        string hostile = Hostile(f, f.File("hostile.onnx"), ("location", "/etc/passwd"), ("offset", "0"));

        var asUnmerged = BadInput.Throws(() => Validator.Run(new ValidationRequest(f.Merged(), hostile), TestFiles.Cpu));
        StringAssert.Contains(asUnmerged.Message, hostile);
        var asBase = BadInput.Throws(() => Validator.Run(new ValidationRequest(f.Merged(), f.Unmerged()) { BasePath = hostile }, TestFiles.Cpu));
        StringAssert.Contains(asBase.Message, hostile);
    }

    [TestMethod]
    public void Run_WellFormedExternalData_StillValidates()
    {
        // The control: the same model with its weight in a file beside it passes, so the rejections above are about
        // the entries, not about external data as such.
        using var f = new TestFiles();
        File.WriteAllBytes(Path.Combine(ModelDir(f), "w.bin"), WeightBytesOf(f));
        string merged = Hostile(f, ("location", "w.bin"), ("offset", "0"), ("length", $"{WeightBytes}"));

        var report = Validator.Run(new ValidationRequest(merged, f.Unmerged()), TestFiles.Cpu);

        Assert.AreEqual(ValidationStatus.Pass, report.Status, string.Join("\n", report.Failures.Select(x => x.Message)));
    }

    private static OnnxLoraException AssertRejected(TestFiles f, string merged)
    {
        var e = BadInput.Throws(() => Validator.Run(new ValidationRequest(merged, f.Unmerged()), TestFiles.Cpu));
        StringAssert.Contains(e.Message, merged);
        StringAssert.Contains(e.Message, "tensor 'lm_head.weight' external_data");
        return e;
    }

    /// <summary>The hostile model's folder, below the test's folder.</summary>
    private static string ModelDir(TestFiles f) => Directory.CreateDirectory(f.File("model")).FullName;

    /// <summary>A file outside the model's folder holding the weight's own bytes, so a model that read it would validate.</summary>
    private static string OutsideFile(TestFiles f)
    {
        string outside = f.File("outside.bin");
        File.WriteAllBytes(outside, WeightBytesOf(f));
        return outside;
    }

    private static byte[] WeightBytesOf(TestFiles f)
    {
        float[] w = f.Lm.MergedW();
        var bytes = new byte[w.Length * 4];
        Buffer.BlockCopy(w, 0, bytes, 0, bytes.Length);
        Assert.HasCount(WeightBytes, bytes);
        return bytes;
    }

    private static string Hostile(TestFiles f, params (string Key, string Value)[] entries) => Hostile(f, Path.Combine(ModelDir(f), "merged.onnx"), entries);

    /// <summary>The merged tiny model with lm_head.weight external, described by exactly these entries.</summary>
    private static string Hostile(TestFiles f, string path, params (string Key, string Value)[] entries)
    {
        var model = ModelProto.Parser.ParseFrom(File.ReadAllBytes(f.Merged(name: "plain-" + Guid.NewGuid().ToString("N") + ".onnx")));
        var weight = model.Graph.Initializer.Single(t => t.Name == "lm_head.weight");
        weight.RawData = ByteString.Empty;
        weight.DataLocation = TensorProto.Types.DataLocation.External;
        foreach (var (key, value) in entries)
        {
            weight.ExternalData.Add(new StringStringEntryProto { Key = key, Value = value });
        }
        File.WriteAllBytes(path, model.ToByteArray());
        return path;
    }
}
