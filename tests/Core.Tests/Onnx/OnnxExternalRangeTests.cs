using System.Globalization;
using Google.Protobuf;
using Onnx;
using OnnxLora.Core.Onnx;

namespace OnnxLora.Core.Tests.Onnx;

/// <summary>
/// External-data ranges on the streaming paths: 64-bit offsets (data past 2 GiB in a sparse file reads), and forged ranges
/// (overlapping another tensor, an offset past 2 GiB in a small file, a range running past the end) rejected on load,
/// before anything is read, naming the tensor.
/// </summary>
[TestClass]
public sealed class OnnxExternalRangeTests
{
    private const long Beyond2GiB = (3L << 30) + 4096;

    /// <summary>The Linear model with 'w' (4800 bytes) and 'b' (600 bytes) in "w.bin" at the given offsets.</summary>
    private static (string Path, string Dir) WithBothExternal(long wOffset, long bOffset)
    {
        var model = OnnxTestModels.Linear();
        string dir = OnnxTestModels.TempFolder();
        foreach (var (name, offset) in new[] { ("w", wOffset), ("b", bOffset) })
        {
            var t = model.Graph.Initializer.Single(t => t.Name == name);
            t.RawData = ByteString.Empty;
            t.DataLocation = TensorProto.Types.DataLocation.External;
            t.ExternalData.Add(new StringStringEntryProto { Key = "location", Value = "w.bin" });
            t.ExternalData.Add(new StringStringEntryProto { Key = "offset", Value = offset.ToString(CultureInfo.InvariantCulture) });
        }
        string path = Path.Combine(dir, "model.onnx");
        File.WriteAllBytes(path, model.ToByteArray());
        return (path, dir);
    }

    [TestMethod]
    public void Load_ExternalRangesThatOverlap_AreRejected()
    {
        var (path, dir) = WithBothExternal(0, 4096);
        File.WriteAllBytes(Path.Combine(dir, "w.bin"), new byte[8192]);
        var e = BadInput.Throws(() => OnnxFile.Load(path, new OnnxLoadOptions { LoadExternalData = false }));
        StringAssert.Contains(e.Message, "tensor 'b' external_data offset");
        StringAssert.Contains(e.Message, "overlapping tensor 'w' [0, 4800)");
        BadInput.Throws(() => OnnxFile.Load(path));
    }

    [TestMethod]
    public void Load_ExternalRangesThatTouch_AreAccepted()
    {
        var (path, dir) = WithBothExternal(0, 4800);
        File.WriteAllBytes(Path.Combine(dir, "w.bin"), new byte[5400]);
        var model = OnnxFile.Load(path);
        Assert.HasCount(300, OnnxTensors.ReadAsSingle(model.Graph.Initializer.Single(t => t.Name == "b")));
    }

    [TestMethod]
    public void Load_ExternalOffsetPast2GiBInASmallFile_IsRejectedWithoutReading()
    {
        var (path, dir) = WithBothExternal(0, Beyond2GiB);
        File.WriteAllBytes(Path.Combine(dir, "w.bin"), new byte[8192]);
        var e = BadInput.Throws(() => OnnxFile.Load(path, new OnnxLoadOptions { LoadExternalData = false }));
        StringAssert.Contains(e.Message, "tensor 'b' external_data offset + length");
        StringAssert.Contains(e.Message, Beyond2GiB.ToString(CultureInfo.InvariantCulture));
    }

    [TestMethod]
    public void Load_ExternalRangeRunningPastTheEnd_IsRejected()
    {
        var (path, dir) = WithBothExternal(0, 8000);
        File.WriteAllBytes(Path.Combine(dir, "w.bin"), new byte[8192]);
        var e = BadInput.Throws(() => OnnxFile.Load(path, new OnnxLoadOptions { LoadExternalData = false }));
        StringAssert.Contains(e.Message, "8000 + 600 in 'w.bin'");
        StringAssert.Contains(e.Message, "8192 bytes");
    }

    [TestMethod]
    public void Load_ExternalDataAtAnOffsetPast2GiB_ReadsIt()
    {
        // A sparse file: 3 GiB of hole, then the tensors (takes a few KB of disk).
        var (path, dir) = WithBothExternal(Beyond2GiB, Beyond2GiB + 4800);
        var w = new float[1200];
        for (int i = 0; i < w.Length; i++)
        {
            w[i] = i * 0.5f;
        }
        using (var data = new FileStream(Path.Combine(dir, "w.bin"), FileMode.CreateNew, FileAccess.Write))
        {
            data.Position = Beyond2GiB;
            data.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(w.AsSpan()));
            data.Write(new byte[600]);
        }

        var model = OnnxFile.Load(path);
        CollectionAssert.AreEqual(w, OnnxTensors.ReadAsSingle(model.Graph.Initializer.Single(t => t.Name == "w")));

        var unloaded = OnnxFile.Load(path, new OnnxLoadOptions { LoadExternalData = false });
        using var files = OnnxExternalDataFiles.Open(path, unloaded);
        var range = files.RangeOf(unloaded.Graph.Initializer.Single(t => t.Name == "w"))!;
        Assert.AreEqual(Beyond2GiB, range.Offset);
        CollectionAssert.AreEqual(w, files.ReadAsSingle(range));
    }
}
