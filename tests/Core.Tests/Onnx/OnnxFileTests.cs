using System.Globalization;
using OnnxLora.Core.Onnx;

namespace OnnxLora.Core.Tests.Onnx;

[TestClass]
public sealed class OnnxFileTests
{
    [TestMethod]
    public void Save_ThenLoad_RoundTripsIdenticalModel()
    {
        string dir = OnnxTestModels.TempFolder();
        var model = OnnxTestModels.Linear();
        string path = Path.Combine(dir, "model.onnx");

        OnnxFile.Save(model, path);
        var loaded = OnnxFile.Load(path);

        Assert.AreEqual(model, loaded);
        CollectionAssert.AreEqual(File.ReadAllBytes(path), OnnxFile.ToBytes(loaded));
        Assert.IsFalse(File.Exists(path + ".data"), "a small model in Auto mode needs no data file");
    }

    [TestMethod]
    public void Save_WithAlwaysExternal_WritesAlignedDataFileAndLoadsBackIdentical()
    {
        string dir = OnnxTestModels.TempFolder();
        var model = OnnxTestModels.Linear(rows: 300);
        byte[] before = OnnxFile.ToBytes(model);
        string path = Path.Combine(dir, "model.onnx");

        OnnxFile.Save(model, path, new OnnxSaveOptions { ExternalData = OnnxExternalData.Always, ExternalThresholdBytes = 100 });

        CollectionAssert.AreEqual(before, OnnxFile.ToBytes(model), "saving must not change the caller's model");
        Assert.IsTrue(File.Exists(path + ".data"));
        var references = OnnxFile.Load(path, new OnnxLoadOptions { LoadExternalData = false });
        var w = references.Graph.Initializer.Single(t => t.Name == "w");
        var b = references.Graph.Initializer.Single(t => t.Name == "b");
        Assert.IsTrue(OnnxTensors.IsExternal(w));
        Assert.IsTrue(OnnxTensors.IsExternal(b));
        long wOffset = long.Parse(w.ExternalData.Single(e => e.Key == "offset").Value, CultureInfo.InvariantCulture);
        long bOffset = long.Parse(b.ExternalData.Single(e => e.Key == "offset").Value, CultureInfo.InvariantCulture);
        Assert.AreEqual(0L, wOffset);
        Assert.AreEqual(8192L, bOffset, "w is 4·300·4 = 4800 bytes, so b starts at the next 4 KiB boundary");
        Assert.AreEqual("model.onnx.data", w.ExternalData.Single(e => e.Key == "location").Value);
        Assert.AreEqual(8192L + 600, new FileInfo(path + ".data").Length);

        var loaded = OnnxFile.Load(path);
        Assert.AreEqual(model, loaded);
        Assert.IsFalse(loaded.Graph.Initializer.Any(OnnxTensors.IsExternal));
    }

    [TestMethod]
    public void Save_Twice_GivesByteIdenticalFiles()
    {
        string dir = OnnxTestModels.TempFolder();
        var options = new OnnxSaveOptions { ExternalData = OnnxExternalData.Always, ExternalThresholdBytes = 0 };
        OnnxFile.Save(OnnxTestModels.Linear(), Path.Combine(dir, "a.onnx"), options);
        OnnxFile.Save(OnnxTestModels.Linear(), Path.Combine(dir, "b.onnx"), options);

        CollectionAssert.AreEqual(File.ReadAllBytes(Path.Combine(dir, "a.onnx.data")), File.ReadAllBytes(Path.Combine(dir, "b.onnx.data")));
        byte[] a = File.ReadAllBytes(Path.Combine(dir, "a.onnx"));
        byte[] b = File.ReadAllBytes(Path.Combine(dir, "b.onnx"));
        // The files differ only in the data file name they point to ("a.onnx.data" vs "b.onnx.data").
        Assert.AreEqual(a.Length, b.Length);
        Assert.AreEqual(a.Count(x => x == (byte)'a') - b.Count(x => x == (byte)'a'), b.Count(x => x == (byte)'b') - a.Count(x => x == (byte)'b'));
    }

    [TestMethod]
    public void Save_ExistingOutput_ThrowsUnlessOverwrite()
    {
        string dir = OnnxTestModels.TempFolder();
        string path = Path.Combine(dir, "model.onnx");
        File.WriteAllText(path, "old");

        var e = BadInput.Throws(() => OnnxFile.Save(OnnxTestModels.Linear(), path));
        StringAssert.Contains(e.Message, path);
        Assert.AreEqual("old", File.ReadAllText(path));

        OnnxFile.Save(OnnxTestModels.Linear(), path, new OnnxSaveOptions { Overwrite = true });
        Assert.AreEqual(OnnxTestModels.Linear(), OnnxFile.Load(path));
        Assert.IsEmpty(Directory.GetFiles(dir, "*.partial"), "no temporary files are left behind");
    }

    [TestMethod]
    public void Save_NeverExternal_LeavesNoDataFileEvenWhenForcedThresholdIsZero()
    {
        string dir = OnnxTestModels.TempFolder();
        string path = Path.Combine(dir, "model.onnx");
        OnnxFile.Save(OnnxTestModels.Linear(), path, new OnnxSaveOptions { ExternalData = OnnxExternalData.Never, ExternalThresholdBytes = 0 });
        Assert.IsFalse(File.Exists(path + ".data"));
        Assert.IsFalse(OnnxFile.Load(path, new OnnxLoadOptions { LoadExternalData = false }).Graph.Initializer.Any(OnnxTensors.IsExternal));
    }

    [TestMethod]
    public void Load_MissingFile_IsBadInput()
    {
        string path = Path.Combine(OnnxTestModels.TempFolder(), "nope.onnx");
        var e = BadInput.Throws(() => OnnxFile.Load(path));
        StringAssert.Contains(e.Message, path);
    }
}
