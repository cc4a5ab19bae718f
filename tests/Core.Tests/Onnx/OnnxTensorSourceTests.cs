using System.Buffers.Binary;
using OnnxLora.Core.Onnx;
using OnnxLora.Core.Onnx.Internals;
using OnnxLora.Core.Peft;
using OnnxLora.Core.Safetensors;

namespace OnnxLora.Core.Tests.Onnx;

/// <summary>
/// Deferred initializer data: a checkpoint tensor streamed into the ONNX data file — converted, transposed block by
/// block, rewritten — checked element by element against plain loops and <see cref="NearestEven"/>.
/// </summary>
[TestClass]
public sealed class OnnxTensorSourceTests
{
    private const int Rows = 37, Cols = 23;

    /// <summary>A [37, 23] F32 tensor "w" (values i·0.37 − 100.1, some beyond F16's precision) in a raw safetensors file.</summary>
    private static (string Path, float[] Values) Checkpoint(TempDir dir, string name = "w.safetensors")
    {
        var values = new float[Rows * Cols];
        for (int i = 0; i < values.Length; i++)
        {
            values[i] = (i * 0.37f) - 100.1f;
        }
        string path = dir.File(name);
        File.WriteAllBytes(path, RawSafetensors.Build($"{{\"w\":{{\"dtype\":\"F32\",\"shape\":[{Rows},{Cols}],\"data_offsets\":[0,{values.Length * 4}]}}}}",
            RawSafetensors.Floats(values)));
        return (path, values);
    }

    private static byte[] Write(OnnxTensorSource source, bool seekable = true)
    {
        var stream = new MemoryStream();
        stream.Write(new byte[5]);
        source.WriteTo(seekable ? stream : new ForwardOnly(stream));
        Assert.AreEqual(5 + source.ByteLength, stream.Position, "the position is left after the tensor");
        return stream.ToArray()[5..];
    }

    [TestMethod]
    [DataRow(1 << 20, DisplayName = "one block")]
    [DataRow(5 * Cols * 2, DisplayName = "blocks of 5 rows")]
    [DataRow(2, DisplayName = "one row per block")]
    public void FromSafetensors_F32ToF16Transposed_InAnyBlockSize_IsTheRoundedTranspose(int blockBytes)
    {
        using var dir = new TempDir();
        var (path, values) = Checkpoint(dir);
        using var file = SafetensorsFile.Open(path);
        var tensor = file.Get("w");

        byte[] bytes = Write(new TensorStreamer(new TensorStreamer.FileInput(file, tensor), tensor.Spec, DType.F16, transpose: true, rewrite: null, blockBytes));

        Assert.HasCount(Rows * Cols * 2, bytes);
        for (int r = 0; r < Rows; r++)
        {
            for (int c = 0; c < Cols; c++)
            {
                ushort expected = NearestEven.F16.Encode(values[(r * Cols) + c]);
                Assert.AreEqual(expected, BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(((c * Rows) + r) * 2)), $"[{c}, {r}]");
            }
        }
    }

    [TestMethod]
    public void FromSafetensors_Rewritten_ConvertsTheRewrittenValues()
    {
        using var dir = new TempDir();
        var (path, values) = Checkpoint(dir);
        using var file = SafetensorsFile.Open(path);

        var source = OnnxTensorSource.FromSafetensors(file, file.Get("w"), DType.BF16, rewrite: new(w =>
        {
            for (int i = 0; i < w.Length; i++)
            {
                w[i] = (w[i] * 3) + 0.001f;
            }
        }));
        byte[] bytes = Write(source);

        CollectionAssert.AreEqual(new long[] { Rows, Cols }, source.Shape.ToArray());
        for (int i = 0; i < values.Length; i++)
        {
            Assert.AreEqual(NearestEven.BF16.Encode((values[i] * 3) + 0.001f), BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(i * 2)), $"element {i}");
        }
    }

    [TestMethod]
    [DataRow(1 << 20, DisplayName = "one band")]
    [DataRow(5 * Rows * 2, DisplayName = "bands of 5 output rows")]
    [DataRow(2, DisplayName = "one output row per band")]
    public void FromSafetensors_RewrittenAndTransposed_InAnyBandSize_IsTheRoundedTransposeOfTheRewrittenValues(int blockBytes)
    {
        using var dir = new TempDir();
        var (path, values) = Checkpoint(dir);
        using var file = SafetensorsFile.Open(path);
        var tensor = file.Get("w");
        static void Rewrite(Span<float> w)
        {
            for (int i = 0; i < w.Length; i++)
            {
                w[i] = (w[i] * 3) + 0.001f;
            }
        }

        foreach (var dtype in new[] { DType.F16, DType.BF16, DType.F32 })
        {
            // Written in order: a destination that cannot seek takes it.
            byte[] bytes = Write(new TensorStreamer(new TensorStreamer.FileInput(file, tensor), tensor.Spec, dtype, transpose: true, new TensorRewrite(Rewrite), blockBytes), seekable: false);

            Assert.HasCount(Rows * Cols * dtype.SizeOf(), bytes);
            for (int r = 0; r < Rows; r++)
            {
                for (int c = 0; c < Cols; c++)
                {
                    float v = (values[(r * Cols) + c] * 3) + 0.001f;
                    int at = ((c * Rows) + r) * dtype.SizeOf();
                    if (dtype == DType.F32)
                    {
                        Assert.AreEqual(BitConverter.SingleToInt32Bits(v), BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(at)), $"{dtype} [{c}, {r}]");
                    }
                    else
                    {
                        ushort expected = (dtype == DType.F16 ? NearestEven.F16 : NearestEven.BF16).Encode(v);
                        Assert.AreEqual(expected, BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(at)), $"{dtype} [{c}, {r}]");
                    }
                }
            }
        }
    }

    /// <summary>
    /// The external data pipeline (<see cref="ExternalDataStream"/>) takes every path in its own buffers — transposed blocks
    /// written piece by piece behind, rewritten bands, converted runs, a kernel copy of same-type bytes — and must give the bytes
    /// a plain stream gets, at the position it was at, with the position left after the tensor.
    /// </summary>
    [TestMethod]
    [DataRow(DType.F16, true, false, DisplayName = "converted, transposed in blocks of 5 rows (pieces written behind)")]
    [DataRow(DType.BF16, true, true, DisplayName = "rewritten, transposed in bands")]
    [DataRow(DType.F16, false, false, DisplayName = "converted in order")]
    [DataRow(DType.F32, false, false, DisplayName = "same type: copied by the kernel")]
    [DataRow(DType.F32, false, true, DisplayName = "rewritten in order")]
    public void FromSafetensors_ThroughTheExternalDataPipeline_InSmallBuffers_GivesTheBytesOfAPlainStream(DType dtype, bool transpose, bool rewrite)
    {
        using var dir = new TempDir();
        var (path, _) = Checkpoint(dir);
        using var file = SafetensorsFile.Open(path);
        var tensor = file.Get("w");
        TensorRewrite? change = rewrite ? new(w => w.Reverse()) : null;
        int blockBytes = 5 * Math.Max(Rows, Cols) * dtype.SizeOf();
        TensorStreamer Source() => new(new TensorStreamer.FileInput(file, tensor), tensor.Spec, dtype, transpose, change, blockBytes);
        byte[] expected = Write(Source());
        string output = dir.File("data.bin");

        using (var atomic = OnnxLora.Core.IO.AtomicFile.Create(output))
        {
            using (var pipe = new ExternalDataStream(atomic, bufferBytes: blockBytes))
            {
                pipe.Write(new byte[] { 1, 2, 3, 4, 5 });
                Source().WriteTo(pipe);
                Assert.AreEqual(5 + expected.Length, pipe.Position, "the position is left after the tensor");
                pipe.Complete();
            }
            atomic.Commit();
        }

        byte[] written = File.ReadAllBytes(output);
        CollectionAssert.AreEqual(new byte[] { 1, 2, 3, 4, 5 }, written[..5]);
        CollectionAssert.AreEqual(expected, written[5..]);
    }

    [TestMethod]
    [DataRow(1 << 20)]
    [DataRow(2)]
    public void FromSafetensors_RewrittenByRows_WritesTheBytesOfTheWholeRewrite_AndRefusesNonFiniteResults(int blockBytes)
    {
        // A rank-2 product as the rewrite: whole (fp32 copy) and by rows (read, merged and encoded a block of rows at a time).
        using var dir = new TempDir();
        var (path, _) = Checkpoint(dir);
        using var file = SafetensorsFile.Open(path);
        var tensor = file.Get("w");
        var random = new Random(5);
        float[] left = [.. Enumerable.Range(0, Rows * 2).Select(_ => (float)random.NextDouble() - 0.5f)];
        float[] right = [.. Enumerable.Range(0, 2 * Cols).Select(_ => (float)random.NextDouble() - 0.5f)];
        var product = new DeltaMath.Product(left, right, Rows, Cols, 2, 0.75);
        var rows = new RowUpdate([product]);
        foreach (var dtype in new[] { DType.F16, DType.BF16, DType.F32 })
        {
            byte[] whole = Write(new TensorStreamer(new TensorStreamer.FileInput(file, tensor), tensor.Spec, dtype, transpose: true, new TensorRewrite(product.Add), blockBytes));
            byte[] byRows = Write(new TensorStreamer(new TensorStreamer.FileInput(file, tensor), tensor.Spec, dtype, transpose: true,
                new TensorRewrite(_ => Assert.Fail("the row form is used"), () => rows, (i, v) => new InvalidDataException($"{v} at {i}")), blockBytes), seekable: false);
            CollectionAssert.AreEqual(whole, byRows, dtype.ToString());
        }
        left[(5 * 2) + 1] = float.NaN;
        var nan = new RowUpdate([new DeltaMath.Product(left, right, Rows, Cols, 2, 0.75)]);
        var e = Assert.ThrowsExactly<InvalidDataException>(() => Write(new TensorStreamer(new TensorStreamer.FileInput(file, tensor), tensor.Spec, DType.F16,
            transpose: true, new TensorRewrite(_ => { }, () => nan, (i, v) => new InvalidDataException($"{v} at {i}")), blockBytes)));
        Assert.AreEqual($"NaN at {5 * Cols}", e.Message, "row 5's first value, in the stored layout");
    }

    [TestMethod]
    public void FromSafetensors_RewrittenByRows_CheckpointTruncatedAfterOpening_FailsNamingTheFileAndTensor()
    {
        using var dir = new TempDir();
        var (path, _) = Checkpoint(dir);
        using var file = SafetensorsFile.Open(path);
        var tensor = file.Get("w");
        var rows = new RowUpdate([new DeltaMath.Product(new float[Rows], new float[Cols], Rows, Cols, 1, 1.0)]);
        var source = new TensorStreamer(new TensorStreamer.FileInput(file, tensor), tensor.Spec, DType.F16, transpose: true, new TensorRewrite(_ => { }, () => rows));
        using (var stream = new FileStream(path, FileMode.Open, FileAccess.Write, FileShare.ReadWrite))
        {
            stream.SetLength(stream.Length - 100);
        }

        var e = Assert.ThrowsExactly<OnnxLoraException>(() => Write(source));

        StringAssert.Contains(e.Message, path);
        StringAssert.Contains(e.Message, "tensor 'w'");
        StringAssert.Contains(e.Message, "truncated after it was opened");
    }

    [TestMethod]
    public void FromSafetensors_CheckpointTruncatedAfterOpening_KernelCopyBehind_FailsNamingTheFileAndTensor()
    {
        using var dir = new TempDir();
        var (path, _) = Checkpoint(dir);
        using var file = SafetensorsFile.Open(path);
        var tensor = file.Get("w");
        var source = new TensorStreamer(new TensorStreamer.FileInput(file, tensor), tensor.Spec, DType.F32, transpose: false, rewrite: null);
        using (var stream = new FileStream(path, FileMode.Open, FileAccess.Write, FileShare.ReadWrite))
        {
            stream.SetLength(stream.Length - 100);
        }

        using var atomic = OnnxLora.Core.IO.AtomicFile.Create(dir.File("data.bin"));
        using var pipe = new ExternalDataStream(atomic);
        source.WriteTo(pipe);
        var e = Assert.ThrowsExactly<OnnxLoraException>(pipe.Complete);

        StringAssert.Contains(e.Message, path);
        StringAssert.Contains(e.Message, "tensor 'w'");
        StringAssert.Contains(e.Message, "truncated after it was opened");
    }

    [TestMethod]
    public void FromSafetensors_SameType_CopiesTheBytes_AndBlocksNeedASeekableDestinationOnlyToTranspose()
    {
        using var dir = new TempDir();
        var (path, values) = Checkpoint(dir);
        using var file = SafetensorsFile.Open(path);
        var tensor = file.Get("w");

        byte[] copied = Write(new TensorStreamer(new TensorStreamer.FileInput(file, tensor), tensor.Spec, DType.F32, transpose: false, rewrite: null, blockBytes: 64), seekable: false);

        CollectionAssert.AreEqual(RawSafetensors.Floats(values), copied);
        Assert.ThrowsExactly<InvalidOperationException>(() =>
            Write(new TensorStreamer(new TensorStreamer.FileInput(file, tensor), tensor.Spec, DType.F32, transpose: true, rewrite: null, blockBytes: 64), seekable: false));
    }

    [TestMethod]
    public void FromBytes_Transposed_IsTheTranspose()
    {
        long[] data = [1, 2, 3, 4, 5, 6];
        var source = OnnxTensorSource.FromBytes(System.Runtime.InteropServices.MemoryMarshal.AsBytes(data.AsSpan()).ToArray(), DType.I64, [2, 3], transpose: true);

        var result = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, long>(source.ToArray()).ToArray();

        CollectionAssert.AreEqual(new long[] { 1, 4, 2, 5, 3, 6 }, result);
        CollectionAssert.AreEqual(new long[] { 3, 2 }, source.Shape.ToArray());
    }

    [TestMethod]
    public void Save_DeferredData_WritesTheBytesOfTheSameModelHeldInMemory()
    {
        using var dir = new TempDir();
        var (path, _) = Checkpoint(dir);
        using var file = SafetensorsFile.Open(path);
        var builder = new OnnxGraphBuilder();
        string x = builder.AddInput("x", DType.F16, "batch", Rows);
        string w = builder.AddInitializer("w_t", OnnxTensorSource.FromSafetensors(file, file.Get("w"), DType.F16, transpose: true));
        builder.AddInitializer("small", OnnxTensorSource.FromBytes(new byte[8], DType.F16, [4]));
        builder.AddNode("MatMul", [x, w], ["y"]);
        builder.AddOutput("y", DType.F16, "batch", Cols);
        var deferred = builder.Build();
        var inMemory = deferred.Clone();
        OnnxFile.LoadDeferredData(inMemory, builder.DeferredData);

        foreach (var external in new[] { OnnxExternalData.Always, OnnxExternalData.Never })
        {
            var options = new OnnxSaveOptions { ExternalData = external };
            Directory.CreateDirectory(dir.File("d" + external));
            Directory.CreateDirectory(dir.File("m" + external));
            OnnxFile.Save(deferred, dir.File($"d{external}/model.onnx"), options, builder.DeferredData);
            OnnxFile.Save(inMemory, dir.File($"m{external}/model.onnx"), options);

            CollectionAssert.AreEqual(File.ReadAllBytes(dir.File($"m{external}/model.onnx")), File.ReadAllBytes(dir.File($"d{external}/model.onnx")), external.ToString());
        }
        CollectionAssert.AreEqual(File.ReadAllBytes(dir.File("mAlways/model.onnx.data")), File.ReadAllBytes(dir.File("dAlways/model.onnx.data")));
        Assert.IsTrue(deferred.Graph.Initializer.All(t => t.RawData.IsEmpty), "saving leaves the deferred model as it was");
        var loaded = OnnxFile.Load(dir.File("dAlways/model.onnx"));
        Assert.AreEqual(inMemory.Graph.Initializer.Single(t => t.Name == "w_t").RawData, loaded.Graph.Initializer.Single(t => t.Name == "w_t").RawData);
    }

    [TestMethod]
    public void Save_CheckpointTruncatedAfterOpening_IsBadInput_AndLeavesNoFile()
    {
        using var dir = new TempDir();
        var (path, _) = Checkpoint(dir);
        using var file = SafetensorsFile.Open(path);
        var builder = new OnnxGraphBuilder();
        string x = builder.AddInput("x", DType.F32, "batch", Cols);
        string w = builder.AddInitializer("w", OnnxTensorSource.FromSafetensors(file, file.Get("w"), DType.F32));
        builder.AddNode("MatMul", [w, x], ["y"]);
        builder.AddOutput("y", DType.F32, Rows, "batch");
        var model = builder.Build();
        // Cut the data short behind the open file's back (it is read with positioned reads, not through the mapping).
        using (var stream = new FileStream(path, FileMode.Open, FileAccess.Write))
        {
            stream.SetLength(stream.Length - 100);
        }

        var error = BadInput.Throws(() => OnnxFile.Save(model, dir.File("m.onnx"), new OnnxSaveOptions { ExternalData = OnnxExternalData.Always }, builder.DeferredData));

        StringAssert.Contains(error.Message, "tensor 'w'");
        StringAssert.Contains(error.Message, "truncated");
        CollectionAssert.AreEquivalent(new[] { "w.safetensors" }, Directory.GetFiles(dir.Path).Select(Path.GetFileName).ToArray(),
            "no output (nor temporary file) is left");
    }

    /// <summary>A write-only stream that cannot seek.</summary>
    private sealed class ForwardOnly(Stream inner) : Stream
    {
        public override bool CanRead => false;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => inner.Position; set => throw new NotSupportedException(); }

        public override void Flush() => inner.Flush();

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => inner.Write(buffer, offset, count);
    }
}
