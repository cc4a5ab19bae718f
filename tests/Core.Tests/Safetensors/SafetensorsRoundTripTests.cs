using System.Buffers.Binary;
using System.Text.Json;
using OnnxLora.Core.Safetensors;

namespace OnnxLora.Core.Tests.Safetensors;

[TestClass]
public sealed class SafetensorsRoundTripTests
{
    [TestMethod]
    public void Open_HandBuiltFile_ReadsSpecsMetadataAndValues()
    {
        using var dir = new TempDir();
        string path = dir.File("a.safetensors");
        byte[] data = RawSafetensors.Floats(1f, -2f, 3.5f, 4f, 0.25f, 6f);
        File.WriteAllBytes(path, RawSafetensors.Build(
            """{"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[2],"data_offsets":[16,24]}}   """,
            data));

        using var file = SafetensorsFile.Open(path);

        Assert.AreEqual("pt", file.Metadata["format"]);
        Assert.HasCount(2, file.Tensors);
        var w = file.Get("w");
        CollectionAssert.AreEqual(new long[] { 2, 2 }, w.Shape.ToArray());
        CollectionAssert.AreEqual(new[] { 1f, -2f, 3.5f, 4f }, file.ReadSingles("w"));
        CollectionAssert.AreEqual(new[] { 0.25f, 6f }, file.ReadSingles("b"));
    }

    [TestMethod]
    public void WriteThenRead_AllDtypes_GivesIdenticalBytes()
    {
        using var dir = new TempDir();
        string path = dir.File("rt.safetensors");
        var rng = new Random(7);
        var tensors = new List<(TensorSpec, ReadOnlyMemory<byte>)>();
        foreach (var (dtype, shape) in new (DType, long[])[]
                 {
                     (DType.F32, [3, 5]), (DType.F16, [4, 3]), (DType.BF16, [2, 7]), (DType.I64, [6]), (DType.U8, []), (DType.F64, [0, 4]),
                 })
        {
            var spec = new TensorSpec($"t.{dtype}", dtype, shape);
            var bytes = new byte[spec.ByteLength];
            rng.NextBytes(bytes);
            tensors.Add((spec, bytes));
        }

        SafetensorsWriter.Save(path, tensors, new Dictionary<string, string> { ["format"] = "pt", ["note"] = "x" });
        using var file = SafetensorsFile.Open(path);

        Assert.HasCount(tensors.Count, file.Tensors);
        foreach (var (spec, bytes) in tensors)
        {
            var info = file.Get(spec.Name);
            Assert.AreEqual(spec.DType, info.DType);
            CollectionAssert.AreEqual(spec.Shape.ToArray(), info.Shape.ToArray());
            CollectionAssert.AreEqual(bytes.ToArray(), file.GetBytes(info).ToArray(), spec.Name);
        }
        Assert.AreEqual("x", file.Metadata["note"]);
    }

    [TestMethod]
    public void Writer_Header_IsPaddedJsonWithContiguousOffsets()
    {
        var specs = new[] { new TensorSpec("a", DType.F16, [3]), new TensorSpec("b", DType.F32, [2, 2]) };
        byte[] header = SafetensorsWriter.BuildHeader(specs, new Dictionary<string, string> { ["format"] = "pt" });

        Assert.AreEqual(0, header.Length % 8);
        using var doc = JsonDocument.Parse(header);
        var a = doc.RootElement.GetProperty("a").GetProperty("data_offsets");
        var b = doc.RootElement.GetProperty("b").GetProperty("data_offsets");
        Assert.AreEqual(0, a[0].GetInt64());
        Assert.AreEqual(6, a[1].GetInt64());
        Assert.AreEqual(6, b[0].GetInt64());
        Assert.AreEqual(22, b[1].GetInt64());
        Assert.AreEqual("pt", doc.RootElement.GetProperty("__metadata__").GetProperty("format").GetString());
    }

    [TestMethod]
    public void ReadSingles_HalfAndBFloat16_MatchIndependentDecoding()
    {
        using var dir = new TempDir();
        string path = dir.File("h.safetensors");
        float[] values = [0f, 1f, -1.5f, 65504f, 1e-3f, -3.140625f, 1e-7f];
        var half = new byte[values.Length * 2];
        var bf16 = new byte[values.Length * 2];
        for (int i = 0; i < values.Length; i++)
        {
            BinaryPrimitives.WriteHalfLittleEndian(half.AsSpan(i * 2), (Half)values[i]);
            // bf16 by truncation of the top 16 bits: exact for these values' stored form.
            BinaryPrimitives.WriteUInt16LittleEndian(bf16.AsSpan(i * 2), (ushort)(BitConverter.SingleToUInt32Bits(values[i]) >> 16));
        }
        SafetensorsWriter.Save(path, [
            (new TensorSpec("h", DType.F16, [values.Length]), half),
            (new TensorSpec("b", DType.BF16, [values.Length]), bf16),
        ]);

        using var file = SafetensorsFile.Open(path);
        float[] h = file.ReadSingles("h");
        float[] b = file.ReadSingles("b");
        for (int i = 0; i < values.Length; i++)
        {
            Assert.AreEqual((double)(Half)values[i], h[i], 0.0, $"f16 #{i}");
            float truncated = BitConverter.UInt32BitsToSingle(BitConverter.SingleToUInt32Bits(values[i]) & 0xFFFF0000u);
            Assert.AreEqual(truncated, b[i], 0.0, $"bf16 #{i}");
        }
    }

    [TestMethod]
    public void Writer_WrongOrderOrIncompleteTensor_IsRefusedAndLeavesNoFile()
    {
        using var dir = new TempDir();
        string path = dir.File("partial.safetensors");
        var specs = new[] { new TensorSpec("a", DType.F32, [2]), new TensorSpec("b", DType.F32, [2]) };

        using (var writer = SafetensorsWriter.Create(path, specs))
        {
            Assert.ThrowsExactly<InvalidOperationException>(() => writer.Write("b", new byte[8]));
            writer.Write("a", new byte[4]);
            writer.Write("a", new byte[4]);
            writer.Write("b", new byte[4]);
            var e = Assert.ThrowsExactly<InvalidOperationException>(writer.Commit);
            StringAssert.Contains(e.Message, "'b'");
        }

        Assert.IsFalse(File.Exists(path));
        Assert.IsEmpty(Directory.GetFiles(dir.Path));
    }

    [TestMethod]
    public void Writer_ExistingOutput_IsNotClobberedWithoutOverwrite()
    {
        using var dir = new TempDir();
        string path = dir.File("exists.safetensors");
        File.WriteAllText(path, "keep me");

        var e = BadInput.Throws(() => SafetensorsWriter.Save(path, [(new TensorSpec("a", DType.F32, [1]), new byte[4])]));

        StringAssert.Contains(e.Message, "exists.safetensors");
        Assert.AreEqual("keep me", File.ReadAllText(path));
        SafetensorsWriter.Save(path, [(new TensorSpec("a", DType.F32, [1]), new byte[4])], overwrite: true);
        using var file = SafetensorsFile.Open(path);
        Assert.IsTrue(file.Contains("a"));
    }

    [TestMethod]
    public void Checkpoint_Sharded_LocatesTensorsAcrossShards()
    {
        using var dir = new TempDir();
        SafetensorsWriter.Save(dir.File("model-00001-of-00002.safetensors"), [(new TensorSpec("x.weight", DType.F32, [2]), RawSafetensors.Floats(1, 2))]);
        SafetensorsWriter.Save(dir.File("model-00002-of-00002.safetensors"), [(new TensorSpec("y.weight", DType.F32, [1]), RawSafetensors.Floats(9))]);
        File.WriteAllText(dir.File(SafetensorsCheckpoint.IndexFileName),
            """{"metadata":{"total_size":12},"weight_map":{"x.weight":"model-00001-of-00002.safetensors","y.weight":"model-00002-of-00002.safetensors"}}""");

        using var ckpt = SafetensorsCheckpoint.Open(dir.Path);

        Assert.HasCount(2, ckpt.Shards);
        CollectionAssert.AreEqual(new[] { 9f }, ckpt.ReadSingles("y.weight"));
        CollectionAssert.AreEqual(new[] { 1f, 2f }, ckpt.ReadSingles("x.weight"));
        Assert.AreEqual(12, ckpt.IndexMetadata["total_size"].GetInt64());
    }

    [TestMethod]
    public void Open_LargeTensor_StreamsWithoutReadingWholeFile()
    {
        using var dir = new TempDir();
        string path = dir.File("big.safetensors");
        const int n = 3 << 20; // 12 MiB of fp32
        var spec = new TensorSpec("big", DType.F32, [n]);
        using (var writer = SafetensorsWriter.Create(path, [spec]))
        {
            var chunk = new byte[1 << 20];
            for (int i = 0; i < 12; i++)
            {
                chunk.AsSpan().Fill((byte)i);
                writer.Write("big", chunk);
            }
            writer.Commit();
        }

        using var file = SafetensorsFile.Open(path);
        var info = file.Get("big");
        Assert.AreEqual((byte)5, file.GetBytes(info, (5L << 20) + 17, 1)[0]);
        using var stream = file.OpenRead(info);
        Assert.AreEqual(12L << 20, stream.Length);
        stream.Position = (11L << 20) + 3;
        Assert.AreEqual(11, stream.ReadByte());
    }
}
