using Google.Protobuf;
using OnnxLora.Validate.Internals;

namespace OnnxLora.Validate.Tests;

[TestClass]
public sealed class OnnxFileScanTests
{
    // ONNX field numbers: ModelProto.graph 7; GraphProto.node 1, initializer 5; NodeProto.input 1, op_type 4;
    // TensorProto.dims 1, data_type 2, name 8, raw_data 9, external_data 13; StringStringEntryProto.key 1, value 2.
    private const int Graph = 7, Node = 1, Initializer = 5, Input = 1, OpType = 4, Dims = 1, DataType = 2, Name = 8, RawData = 9, ExternalData = 13;

    [TestMethod]
    public void Read_FindsEmbeddingRowsAndExternalData()
    {
        using var f = new TestFiles(vocab: 37, hidden: 5);
        string path = f.Merged(g => g with { ExternalWeightFile = "w.bin" });

        var scan = OnnxFileScan.Read(path);

        Assert.AreEqual(37L, scan.EmbeddingRows("input_ids"));
        Assert.IsNull(scan.EmbeddingRows("attention_mask"));
        CollectionAssert.AreEqual(new[] { "w.bin" }, scan.ExternalLocations.ToArray());
        CollectionAssert.AreEqual(new long[] { 5, 37 }, scan.InitializerDims["lm_head.weight"]);
        CollectionAssert.AreEqual(new long[] { 37, 5 }, scan.InitializerDims["embed.weight"]);
    }

    [TestMethod]
    public void Read_TruncatedFile_IsBadInputNamingTheFile()
    {
        using var f = new TestFiles();
        byte[] bytes = File.ReadAllBytes(f.Merged());
        string path = f.File("truncated.onnx");
        File.WriteAllBytes(path, bytes[..(bytes.Length / 2)]);

        var e = BadInput.Throws(() => OnnxFileScan.Read(path));

        StringAssert.StartsWith(e.Message, path);
        StringAssert.Contains(e.Message, "protobuf");
    }

    [TestMethod]
    public void Read_PackedAndUnpackedDims_OtherFieldsSkipped_NonUtf8NameDecodedLeniently()
    {
        using var f = new TestFiles();
        byte[] badName = [(byte)'e', 0xFF, (byte)'x'];
        string path = Write(f, Message(Graph,
            Message(Initializer, Packed(Dims, 3, 300), Varint(DataType, 1), Text(Name, "packed"), Fixed64(99), Fixed32(98)),
            Message(Initializer, Varint(Dims, 2), Text(Name, "unpacked"), Varint(Dims, 4)),
            Message(Initializer, Varint(Dims, 8), Varint(Dims, 2), Bytes(Name, badName)),
            Message(Node, Text(Input, "e\uFFFDx"), Text(Input, "ids"), Text(OpType, "Gather"))),
            Varint(1, 9));

        var scan = OnnxFileScan.Read(path);

        CollectionAssert.AreEqual(new long[] { 3, 300 }, scan.InitializerDims["packed"]);
        CollectionAssert.AreEqual(new long[] { 2, 4 }, scan.InitializerDims["unpacked"]);
        Assert.AreEqual(8L, scan.EmbeddingRows("ids"), "invalid UTF-8 becomes U+FFFD, as Encoding.UTF8 decodes it");
        Assert.IsEmpty(scan.ExternalLocations);
    }

    [TestMethod]
    [DataRow(3)]
    [DataRow(4)]
    [DataRow(6)]
    [DataRow(7)]
    public void Read_WireTypeOnnxNeverUses_IsRejectedNamingFieldAndByte(int wire)
    {
        using var f = new TestFiles();
        byte[] initializer = Message(Initializer, Text(Name, "w"));
        string path = Write(f, Message(Graph, initializer, Tag(12, wire)));

        var e = BadInput.Throws(() => OnnxFileScan.Read(path));

        // The bad tag follows the graph's tag and length (2 bytes) and the initializer.
        Assert.AreEqual($"{path}: protobuf field 12 at byte {2 + initializer.Length}: found wire type {wire}, expected 0, 1, 2 or 5.", e.Message);
    }

    [TestMethod]
    [DataRow(true)]
    [DataRow(false)]
    public void Read_MoreThan64Dims_IsRejected(bool packed)
    {
        using var f = new TestFiles();
        long[] dims = [.. Enumerable.Repeat(1L, 65)];
        byte[] field = packed ? Packed(Dims, dims) : [.. dims.SelectMany(d => Varint(Dims, d))];
        string path = Write(f, Message(Graph, Message(Initializer, field)));

        var e = BadInput.Throws(() => OnnxFileScan.Read(path));

        Assert.AreEqual($"{path}: initializer dims: found more than 64, expected at most 64.", e.Message);
    }

    [TestMethod]
    public void Read_FieldLongerThanItsMessage_IsRejected()
    {
        using var f = new TestFiles();
        // The initializer claims 50 bytes inside a graph of 10.
        byte[] graphBody = [.. Tag(Initializer, 2), 50, .. new byte[8]];
        string path = Write(f, [.. Tag(Graph, 2), (byte)graphBody.Length, .. graphBody]);

        var e = BadInput.Throws(() => OnnxFileScan.Read(path));

        StringAssert.StartsWith(e.Message, $"{path}: protobuf field {Initializer} at byte 2: found ");
    }

    [TestMethod]
    public void Read_MalformedVarint_IsRejected()
    {
        using var f = new TestFiles();
        string path = Write(f, [.. Tag(1, 0), .. Enumerable.Repeat((byte)0xFF, 11)]);

        var e = BadInput.Throws(() => OnnxFileScan.Read(path));

        StringAssert.StartsWith(e.Message, $"{path}: protobuf field 1 at byte 0: found ");
    }

    /// <summary>
    /// A 256 MiB embedded tensor (a sparse file) between two initializers: the scan passes over it without holding
    /// it, and still reads what follows.
    /// </summary>
    [TestMethod]
    public void Read_HugeEmbeddedTensor_IsPassedOverWithoutAllocatingIt()
    {
        using var f = new TestFiles();
        const long raw = 256L << 20;
        byte[] before = [.. Varint(Dims, 4), .. Text(Name, "big"), .. Tag(RawData, 2), .. VarintBytes(raw)];
        byte[] after = Message(Initializer, Varint(Dims, 7), Text(Name, "small"), Message(ExternalData, Text(1, "location"), Text(2, "small.bin")));
        long tensorLength = before.Length + raw;
        byte[] head = [.. Tag(Graph, 2), .. VarintBytes(tensorLength + Tag(Initializer, 2).Length + VarintBytes(tensorLength).Length + after.Length),
            .. Tag(Initializer, 2), .. VarintBytes(tensorLength), .. before];
        string path = f.File("big.onnx");
        using (var fs = new FileStream(path, FileMode.CreateNew))
        {
            fs.Write(head);
            fs.Seek(raw, SeekOrigin.Current);
            fs.Write(after);
        }

        long allocated = GC.GetAllocatedBytesForCurrentThread();
        var scan = OnnxFileScan.Read(path);
        allocated = GC.GetAllocatedBytesForCurrentThread() - allocated;

        CollectionAssert.AreEqual(new long[] { 4 }, scan.InitializerDims["big"]);
        CollectionAssert.AreEqual(new long[] { 7 }, scan.InitializerDims["small"]);
        CollectionAssert.AreEqual(new[] { "small.bin" }, scan.ExternalLocations.ToArray());
        Assert.IsLessThan(16L << 20, allocated, $"allocated {allocated} bytes");
    }

    /// <summary>Protobuf messages end at 2 GiB; a larger .onnx file (a sparse one here) is named with its size, not misread.</summary>
    [TestMethod]
    public void Read_FileOver2GiB_IsRejectedWithItsSize()
    {
        using var f = new TestFiles();
        string path = f.File("over2g.onnx");
        using (var fs = new FileStream(path, FileMode.CreateNew))
        {
            fs.Write(Message(Graph, Message(Initializer, Text(Name, "w"))));
            fs.SetLength((long)int.MaxValue + 4096);
        }

        var e = BadInput.Throws(() => OnnxFileScan.Read(path));

        StringAssert.StartsWith(e.Message, $"{path}: file size: found {(long)int.MaxValue + 4096} bytes, expected at most {int.MaxValue} bytes");
    }

    private static string Write(TestFiles f, params byte[][] fields)
    {
        string path = f.File("scan.onnx");
        File.WriteAllBytes(path, [.. fields.SelectMany(x => x)]);
        return path;
    }

    private static byte[] Encode(Action<CodedOutputStream> write)
    {
        using var ms = new MemoryStream();
        using (var o = new CodedOutputStream(ms, leaveOpen: true))
        {
            write(o);
        }
        return ms.ToArray();
    }

    private static byte[] Tag(int field, int wire) => Encode(o => o.WriteTag(((uint)field << 3) | (uint)wire));

    private static byte[] VarintBytes(long value) => Encode(o => o.WriteInt64(value));

    private static byte[] Varint(int field, long value) => [.. Tag(field, 0), .. VarintBytes(value)];

    private static byte[] Fixed64(int field) => Encode(o =>
    {
        o.WriteTag(field, WireFormat.WireType.Fixed64);
        o.WriteFixed64(0x0102030405060708);
    });

    private static byte[] Fixed32(int field) => Encode(o =>
    {
        o.WriteTag(field, WireFormat.WireType.Fixed32);
        o.WriteFixed32(0x01020304);
    });

    private static byte[] Bytes(int field, byte[] payload) => Encode(o =>
    {
        o.WriteTag(field, WireFormat.WireType.LengthDelimited);
        o.WriteBytes(ByteString.CopyFrom(payload));
    });

    private static byte[] Text(int field, string value) => Bytes(field, System.Text.Encoding.UTF8.GetBytes(value));

    private static byte[] Message(int field, params byte[][] fields) => Bytes(field, [.. fields.SelectMany(x => x)]);

    private static byte[] Packed(int field, params long[] values) => Bytes(field, [.. values.SelectMany(VarintBytes)]);
}
