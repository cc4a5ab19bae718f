using Google.Protobuf;
using Onnx;
using OnnxLora.Core.Onnx;

namespace OnnxLora.Core.Tests.Onnx;

[TestClass]
public sealed class OnnxFileMalformedTests
{
    [TestMethod]
    public void Load_TruncatedFile_ThrowsNamingTheFile()
    {
        string dir = OnnxTestModels.TempFolder();
        string path = Path.Combine(dir, "model.onnx");
        byte[] bytes = OnnxFile.ToBytes(OnnxTestModels.Linear());
        // Cut at several places: inside the graph, near the end, a single byte.
        foreach (int cut in new[] { bytes.Length / 2, bytes.Length - 3, 1 })
        {
            File.WriteAllBytes(path, bytes[..cut]);
            var e = BadInput.Throws(() => OnnxFile.Load(path), $"cut at {cut}");
            StringAssert.Contains(e.Message, path);
        }
    }

    [TestMethod]
    public void Load_GarbageBytes_ThrowsNamingTheFile()
    {
        string dir = OnnxTestModels.TempFolder();
        string path = Path.Combine(dir, "garbage.onnx");
        var random = new Random(1234);
        for (int trial = 0; trial < 20; trial++)
        {
            byte[] junk = new byte[1 + random.Next(4096)];
            random.NextBytes(junk);
            File.WriteAllBytes(path, junk);
            var e = BadInput.Throws(() => OnnxFile.Load(path), $"trial {trial}");
            StringAssert.Contains(e.Message, path);
        }
        File.WriteAllText(path, "this is a text file, not a model\n");
        BadInput.Throws(() => OnnxFile.Load(path));
    }

    [TestMethod]
    public void Load_EmptyFile_Throws()
    {
        string path = Path.Combine(OnnxTestModels.TempFolder(), "empty.onnx");
        File.WriteAllBytes(path, []);
        var e = BadInput.Throws(() => OnnxFile.Load(path));
        StringAssert.Contains(e.Message, path);
    }

    [TestMethod]
    public void Load_FileOver2GiB_ThrowsBeforeReading()
    {
        string path = Path.Combine(OnnxTestModels.TempFolder(), "huge.onnx");
        using (var stream = File.Create(path))
        {
            stream.SetLength(OnnxFile.MaxProtobufBytes + 1); // sparse: no disk used
        }
        try
        {
            var e = BadInput.Throws(() => OnnxFile.Load(path));
            StringAssert.Contains(e.Message, path);
            StringAssert.Contains(e.Message, "external data");
        }
        finally
        {
            File.Delete(path);
        }
    }

    [TestMethod]
    public void Load_ExternalLocationWithDotDot_IsRejected()
    {
        var (path, _) = WithExternalReference(location: "../secret.bin");
        var e = BadInput.Throws(() => OnnxFile.Load(path));
        StringAssert.Contains(e.Message, path);
        StringAssert.Contains(e.Message, "tensor 'w'");
        StringAssert.Contains(e.Message, "'../secret.bin'");
    }

    [TestMethod]
    public void Load_ExternalAbsoluteLocation_IsRejected()
    {
        string outside = Path.Combine(OnnxTestModels.TempFolder(), "abs.bin");
        File.WriteAllBytes(outside, new byte[4800]);
        var (path, _) = WithExternalReference(location: outside);
        var e = BadInput.Throws(() => OnnxFile.Load(path));
        StringAssert.Contains(e.Message, "absolute path");
        StringAssert.Contains(e.Message, "tensor 'w'");
    }

    [TestMethod]
    public void Load_ExternalFileSymlinkedOutsideFolder_IsRejected()
    {
        string outside = Path.Combine(OnnxTestModels.TempFolder(), "outside.bin");
        File.WriteAllBytes(outside, new byte[4800]);
        var (path, dir) = WithExternalReference(location: "weights.bin");
        File.CreateSymbolicLink(Path.Combine(dir, "weights.bin"), outside);

        var e = BadInput.Throws(() => OnnxFile.Load(path));
        StringAssert.Contains(e.Message, "symbolic link");
        StringAssert.Contains(e.Message, "tensor 'w'");
    }

    [TestMethod]
    public void Load_ExternalFileUnderSymlinkedFolderOutside_IsRejected()
    {
        string outsideDir = OnnxTestModels.TempFolder();
        File.WriteAllBytes(Path.Combine(outsideDir, "w.bin"), new byte[4800]);
        var (path, dir) = WithExternalReference(location: "sub/w.bin");
        Directory.CreateSymbolicLink(Path.Combine(dir, "sub"), outsideDir);

        var e = BadInput.Throws(() => OnnxFile.Load(path));
        StringAssert.Contains(e.Message, "symbolic link");
    }

    [TestMethod]
    public void Load_ExternalFileSymlinkedInsideFolder_IsAccepted()
    {
        var (path, dir) = WithExternalReference(location: "link.bin");
        byte[] data = new byte[4800];
        data[6] = 0x80;
        data[7] = 0x3F; // second float = 1.0
        File.WriteAllBytes(Path.Combine(dir, "real.bin"), data);
        File.CreateSymbolicLink(Path.Combine(dir, "link.bin"), "real.bin");

        var model = OnnxFile.Load(path);
        float[] w = OnnxTensors.ReadAsSingle(model.Graph.Initializer.Single(t => t.Name == "w"));
        Assert.AreEqual(0f, w[0]);
        Assert.AreEqual(1f, w[1]);
    }

    [TestMethod]
    public void Load_ExternalOffsetBeyondDataFile_IsRejected()
    {
        var (path, dir) = WithExternalReference(location: "w.bin", offset: 4096);
        File.WriteAllBytes(Path.Combine(dir, "w.bin"), new byte[4800]);
        var e = BadInput.Throws(() => OnnxFile.Load(path));
        StringAssert.Contains(e.Message, "offset + length");
        StringAssert.Contains(e.Message, "4800 bytes");
    }

    [TestMethod]
    public void Load_ExternalLengthNotMatchingDims_IsRejected()
    {
        var (path, dir) = WithExternalReference(location: "w.bin", length: 100);
        File.WriteAllBytes(Path.Combine(dir, "w.bin"), new byte[4800]);
        var e = BadInput.Throws(() => OnnxFile.Load(path));
        StringAssert.Contains(e.Message, "external_data length");
        StringAssert.Contains(e.Message, "4800");
    }

    [TestMethod]
    public void Load_ExternalDataFileMissing_IsBadInput()
    {
        var (path, _) = WithExternalReference(location: "absent.bin");
        var e = BadInput.Throws(() => OnnxFile.Load(path));
        StringAssert.Contains(e.Message, "absent.bin");
        StringAssert.Contains(e.Message, "tensor 'w'");
    }

    [TestMethod]
    public void Load_NodeReferencingMissingInitializer_IsRejected()
    {
        var model = OnnxTestModels.Linear();
        var w = model.Graph.Initializer.Single(t => t.Name == "w");
        model.Graph.Initializer.Remove(w);
        string path = Path.Combine(OnnxTestModels.TempFolder(), "model.onnx");
        File.WriteAllBytes(path, model.ToByteArray());

        var e = BadInput.Throws(() => OnnxFile.Load(path));
        StringAssert.Contains(e.Message, path);
        StringAssert.Contains(e.Message, "node '/mm' (MatMul) input 'w'");
    }

    [TestMethod]
    public void Load_RawDataLengthNotMatchingDims_IsRejected()
    {
        var model = OnnxTestModels.Linear();
        var w = model.Graph.Initializer.Single(t => t.Name == "w");
        w.RawData = ByteString.CopyFrom(new byte[12]);
        string path = Path.Combine(OnnxTestModels.TempFolder(), "model.onnx");
        File.WriteAllBytes(path, model.ToByteArray());

        var e = BadInput.Throws(() => OnnxFile.Load(path));
        StringAssert.Contains(e.Message, "tensor 'w' raw_data");
        StringAssert.Contains(e.Message, "12 bytes");
    }

    [TestMethod]
    public void Load_UnknownDataType_IsRejectedNamingTheTensor()
    {
        var model = OnnxTestModels.Linear();
        var b = model.Graph.Initializer.Single(t => t.Name == "b");
        b.DataType = 999;
        string path = Path.Combine(OnnxTestModels.TempFolder(), "model.onnx");
        File.WriteAllBytes(path, model.ToByteArray());

        var e = BadInput.Throws(() => OnnxFile.Load(path));
        StringAssert.Contains(e.Message, path);
        StringAssert.Contains(e.Message, "tensor 'b' data_type");
        StringAssert.Contains(e.Message, "found 999");
        // Also when the graph is not validated and external data is not loaded (the inspect path).
        BadInput.Throws(() => OnnxFile.Load(path, new OnnxLoadOptions { LoadExternalData = false, ValidateGraph = false }));
    }

    [TestMethod]
    public void Load_ModelWithoutGraphOrOpset_IsRejected()
    {
        string path = Path.Combine(OnnxTestModels.TempFolder(), "model.onnx");
        var noGraph = new ModelProto { IrVersion = 8 };
        noGraph.OpsetImport.Add(new OperatorSetIdProto { Version = 17 });
        File.WriteAllBytes(path, noGraph.ToByteArray());
        StringAssert.Contains(BadInput.Throws(() => OnnxFile.Load(path)).Message, "graph");

        var noOpset = new ModelProto { IrVersion = 8, Graph = new GraphProto() };
        File.WriteAllBytes(path, noOpset.ToByteArray());
        StringAssert.Contains(BadInput.Throws(() => OnnxFile.Load(path)).Message, "opset_import");
    }

    [TestMethod]
    public void Load_DeeplyNestedSubgraphs_HitRecursionLimit()
    {
        // An If node whose then_branch nests another If, 60 levels deep: over a recursion limit of 50.
        var inner = new GraphProto { Name = "g" };
        for (int i = 0; i < 60; i++)
        {
            var node = new NodeProto { OpType = "If", Name = $"if{i}" };
            node.Attribute.Add(new AttributeProto { Name = "then_branch", Type = AttributeProto.Types.AttributeType.Graph, G = inner });
            inner = new GraphProto { Name = $"g{i}" };
            inner.Node.Add(node);
        }
        var model = new ModelProto { IrVersion = 8, Graph = inner };
        model.OpsetImport.Add(new OperatorSetIdProto { Version = 17 });
        string path = Path.Combine(OnnxTestModels.TempFolder(), "deep.onnx");
        File.WriteAllBytes(path, model.ToByteArray());

        var e = BadInput.Throws(() => OnnxFile.Load(path, new OnnxLoadOptions { RecursionLimit = 50, ValidateGraph = false }));
        StringAssert.Contains(e.Message, path);
    }

    [TestMethod]
    public void Load_ExternalDataWithoutLocation_IsRejectedNamingTheTensor()
    {
        var (path, dir) = WithExternalEntries(("offset", "0"), ("length", "4800"));
        File.WriteAllBytes(Path.Combine(dir, "model.onnx.data"), new byte[4800]);

        var e = BadInput.Throws(() => OnnxFile.Load(path));
        StringAssert.Contains(e.Message, path);
        StringAssert.Contains(e.Message, "tensor 'w' external_data");
        StringAssert.Contains(e.Message, "no 'location' entry");
    }

    [TestMethod]
    [DataRow("-4096")]
    [DataRow("-1")]
    [DataRow("1e3")]
    [DataRow("18446744073709551616")]
    public void Load_ExternalDataWithANegativeOrMalformedOffset_IsRejected(string offset)
    {
        var (path, dir) = WithExternalEntries(("location", "w.bin"), ("offset", offset));
        File.WriteAllBytes(Path.Combine(dir, "w.bin"), new byte[8192]);

        var e = BadInput.Throws(() => OnnxFile.Load(path));
        StringAssert.Contains(e.Message, path);
        StringAssert.Contains(e.Message, "tensor 'w' external_data offset");
        StringAssert.Contains(e.Message, $"'{offset}'");
    }

    [TestMethod]
    public void Load_ExternalDataWithANegativeLength_IsRejected()
    {
        var (path, dir) = WithExternalEntries(("location", "w.bin"), ("offset", "0"), ("length", "-4800"));
        File.WriteAllBytes(Path.Combine(dir, "w.bin"), new byte[8192]);

        var e = BadInput.Throws(() => OnnxFile.Load(path));
        StringAssert.Contains(e.Message, "tensor 'w' external_data length");
        StringAssert.Contains(e.Message, "'-4800'");
    }

    /// <summary>A model whose initializer 'w' (fp32 [4, 300]) is external with exactly these key/value entries.</summary>
    private static (string Path, string Dir) WithExternalEntries(params (string Key, string Value)[] entries)
    {
        var model = OnnxTestModels.Linear();
        var w = model.Graph.Initializer.Single(t => t.Name == "w");
        w.RawData = ByteString.Empty;
        w.DataLocation = TensorProto.Types.DataLocation.External;
        foreach (var (key, value) in entries)
        {
            w.ExternalData.Add(new StringStringEntryProto { Key = key, Value = value });
        }
        string dir = OnnxTestModels.TempFolder();
        string path = Path.Combine(dir, "model.onnx");
        File.WriteAllBytes(path, model.ToByteArray());
        return (path, dir);
    }

    /// <summary>A model whose initializer 'w' (fp32 [4, 300]) points at external data with the given entries.</summary>
    private static (string Path, string Dir) WithExternalReference(string location, long offset = 0, long? length = null)
    {
        var model = OnnxTestModels.Linear();
        var w = model.Graph.Initializer.Single(t => t.Name == "w");
        w.RawData = ByteString.Empty;
        w.DataLocation = TensorProto.Types.DataLocation.External;
        w.ExternalData.Add(new StringStringEntryProto { Key = "location", Value = location });
        w.ExternalData.Add(new StringStringEntryProto { Key = "offset", Value = offset.ToString(System.Globalization.CultureInfo.InvariantCulture) });
        if (length is not null)
        {
            w.ExternalData.Add(new StringStringEntryProto { Key = "length", Value = length.Value.ToString(System.Globalization.CultureInfo.InvariantCulture) });
        }
        string dir = OnnxTestModels.TempFolder();
        string path = Path.Combine(dir, "model.onnx");
        File.WriteAllBytes(path, model.ToByteArray());
        return (path, dir);
    }
}
