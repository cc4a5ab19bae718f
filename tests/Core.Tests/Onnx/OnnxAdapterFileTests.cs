using System.Buffers.Binary;
using OnnxLora.Core.Onnx;
using OnnxLora.Core.Peft;
using OnnxLora.Core.Tests.Peft;

namespace OnnxLora.Core.Tests.Onnx;

[TestClass]
public sealed class OnnxAdapterFileTests
{
    [ClassCleanup]
    public static void Cleanup() => PeftTestFiles.DeleteAll();

    private static OnnxAdapterParameter F32(string name, long[] shape, params float[] values)
    {
        var bytes = new byte[values.Length * 4];
        for (int i = 0; i < values.Length; i++)
        {
            BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(4 * i), values[i]);
        }
        return new OnnxAdapterParameter(name, DType.F32, shape, bytes);
    }

    private static byte[] TwoParameterFile() => OnnxAdapterFile.Serialize(
        [F32("a", [2, 3], 1, 2, 3, 4, 5, 6), F32("b", [3, 0]), new OnnxAdapterParameter("h", DType.F16, [1], new byte[] { 0x00, 0x3C })],
        adapterVersion: 7, modelVersion: 3).ToArray();

    [TestMethod]
    public void RoundTripKeepsNamesShapesTypesAndBytes()
    {
        var adapter = OnnxAdapterFile.Parse(TwoParameterFile(), "t.onnx_adapter");
        Assert.AreEqual(1, adapter.FormatVersion);
        Assert.AreEqual(7, adapter.AdapterVersion);
        Assert.AreEqual(3, adapter.ModelVersion);
        CollectionAssert.AreEqual(new[] { "a", "b", "h" }, adapter.Parameters.Select(p => p.Name).ToArray());
        CollectionAssert.AreEqual(new long[] { 2, 3 }, adapter.Parameters[0].Shape.ToArray());
        CollectionAssert.AreEqual(new long[] { 3, 0 }, adapter.Parameters[1].Shape.ToArray());
        Assert.AreEqual(0, adapter.Parameters[1].Data.Length);
        Assert.AreEqual(DType.F16, adapter.Parameters[2].DType);
        var a = adapter.Parameters[0].Data.Span;
        for (int i = 0; i < 6; i++)
        {
            Assert.AreEqual(i + 1f, BinaryPrimitives.ReadSingleLittleEndian(a[(4 * i)..]));
        }
    }

    [TestMethod]
    public void FileHasTheIdentifierAndEightByteAlignedRawData()
    {
        byte[] bytes = TwoParameterFile();
        Assert.AreEqual("TORT", System.Text.Encoding.ASCII.GetString(bytes, 4, 4));
        var adapter = OnnxAdapterFile.Parse(bytes, "t");
        // Data is a slice of the file buffer: its offset in the file must be a multiple of 8 (force_align: 8).
        foreach (var p in adapter.Parameters.Where(p => p.Data.Length > 0))
        {
            Assert.IsTrue(System.Runtime.InteropServices.MemoryMarshal.TryGetArray(p.Data, out var segment));
            Assert.AreEqual(0, segment.Offset % 8, p.Name);
        }
    }

    [TestMethod]
    public void WriteIsAtomicAndRefusesToOverwrite()
    {
        using var dir = new TempDir();
        string path = dir.File("x.onnx_adapter");
        OnnxAdapterFile.Write(path, [F32("a", [1], 1f)]);
        Assert.AreEqual(1, OnnxAdapterFile.Read(path).Parameters.Count);
        BadInput.Throws(() => OnnxAdapterFile.Write(path, [F32("a", [1], 2f)]));
        BadInput.Throws(() => OnnxAdapterFile.Write(dir.File("y.onnx_adapter"), [F32("a", [2], 2f)]), "data length does not match the shape");
        Assert.AreEqual(1, Directory.GetFiles(dir.Path).Length, "a refused write leaves nothing behind");
    }

    [TestMethod]
    public void RepeatedOrEmptyNamesAreRefused()
    {
        BadInput.Throws(() => OnnxAdapterFile.Serialize([F32("a", [1], 1f), F32("a", [1], 2f)]));
        BadInput.Throws(() => OnnxAdapterFile.Serialize([F32("", [1], 1f)]));
        BadInput.Throws(() => OnnxAdapterFile.Serialize([F32("n", [-1])]));
    }

    [TestMethod]
    public void NotAnAdapterFileIsNamed()
    {
        var e = BadInput.Throws(() => OnnxAdapterFile.Parse(new byte[16], "zeros.onnx_adapter"));
        StringAssert.Contains(e.Message, "zeros.onnx_adapter");
        StringAssert.Contains(e.Message, "TORT");
        BadInput.Throws(() => OnnxAdapterFile.Parse(new byte[3], "tiny"));
    }

    [TestMethod]
    public void EveryTruncationIsRejectedUnlessOnlyPaddingIsCut()
    {
        byte[] bytes = TwoParameterFile();
        var whole = OnnxAdapterFile.Parse(bytes, "whole");
        int accepted = 0;
        for (int n = 0; n < bytes.Length; n++)
        {
            byte[] cut = bytes[..n];
            try
            {
                // A FlatBuffer is addressed from its start: cutting anything it points to must be caught.
                // Only trailing alignment padding may go, and then the contents are unchanged.
                var parsed = OnnxAdapterFile.Parse(cut, "cut");
                accepted++;
                Assert.IsGreaterThan(bytes.Length - 8, n, $"truncated to {n} of {bytes.Length} bytes was accepted");
                CollectionAssert.AreEqual(whole.Parameters.Select(p => p.Name).ToArray(), parsed.Parameters.Select(p => p.Name).ToArray());
                Assert.IsTrue(whole.Parameters.Zip(parsed.Parameters).All(x => x.First.Data.Span.SequenceEqual(x.Second.Data.Span)));
            }
            catch (OnnxLoraException e)
            {
                Assert.AreEqual(ErrorKind.BadInput, e.Kind, e.Message);
            }
        }
        Assert.IsLessThan(8, accepted);
    }

    [TestMethod]
    public void ForgedOffsetsAndLengthsAreRejectedWithoutCrashing()
    {
        byte[] bytes = TwoParameterFile();
        var rng = new Random(11);
        int rejected = 0;
        for (int trial = 0; trial < 3000; trial++)
        {
            byte[] forged = (byte[])bytes.Clone();
            int at = rng.Next(forged.Length - 3);
            // Forge one 32-bit word (offsets, lengths, vtable entries) with a hostile value.
            int value = rng.Next(4) switch { 0 => int.MaxValue, 1 => -8, 2 => forged.Length + rng.Next(64), _ => rng.Next() };
            BinaryPrimitives.WriteInt32LittleEndian(forged.AsSpan(at), value);
            try
            {
                var adapter = OnnxAdapterFile.Parse(forged, "forged");
                // Accepted: then it must be self-consistent (every parameter's data matches its shape).
                foreach (var p in adapter.Parameters)
                {
                    Assert.AreEqual(p.ElementCount * p.DType.SizeOf(), p.Data.Length, p.Name);
                }
            }
            catch (OnnxLoraException e)
            {
                Assert.AreEqual(ErrorKind.BadInput, e.Kind, e.Message);
                StringAssert.Contains(e.Message, "forged");
                rejected++;
            }
        }
        Assert.IsGreaterThan(1000, rejected, "most forged words must be caught");
    }

    [TestMethod]
    public void LargeFilesAreCheckedToTheEndAndReadingWritesNothingToTheConsole()
    {
        // Over 32 KiB: where Google.FlatBuffers' own verifier stops checking (its vtable positions are Int16).
        var parameters = Enumerable.Range(0, 8).Select(i => F32($"p{i}", [64, 32], [.. Enumerable.Range(0, 64 * 32).Select(v => (float)v)])).ToList();
        byte[] bytes = OnnxAdapterFile.Serialize(parameters).ToArray();
        Assert.IsGreaterThan(64 * 1024, bytes.Length);
        var console = Console.Out;
        using var captured = new StringWriter();
        Console.SetOut(captured);
        try
        {
            Assert.HasCount(8, OnnxAdapterFile.Parse(bytes, "big").Parameters);
            BadInput.Throws(() => OnnxAdapterFile.Parse(bytes[..^1024], "big-cut"));
            byte[] forged = (byte[])bytes.Clone();
            // The last parameter's raw_data length (found through the file) made to reach past the end.
            var last = OnnxAdapterFile.Parse(bytes, "big").Parameters[^1];
            Assert.IsTrue(System.Runtime.InteropServices.MemoryMarshal.TryGetArray(last.Data, out var segment));
            BinaryPrimitives.WriteInt32LittleEndian(forged.AsSpan(segment.Offset - 4), segment.Count + bytes.Length);
            var e = BadInput.Throws(() => OnnxAdapterFile.Parse(forged, "big-forged"));
            StringAssert.Contains(e.Message, "raw_data");
        }
        finally
        {
            Console.SetOut(console);
        }
        Assert.AreEqual(string.Empty, captured.ToString());
    }

    [TestMethod]
    public void OtherFormatVersionIsRefused()
    {
        byte[] bytes = TwoParameterFile();
        // Find format_version (= 1) through the root table's vtable: root offset at 0, vtable at root - soffset.
        int root = BinaryPrimitives.ReadInt32LittleEndian(bytes);
        int vtable = root - BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(root));
        int field = BinaryPrimitives.ReadInt16LittleEndian(bytes.AsSpan(vtable + 4));
        Assert.AreEqual(1, BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(root + field)));
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(root + field), 2);
        var e = BadInput.Throws(() => OnnxAdapterFile.Parse(bytes, "v2"));
        StringAssert.Contains(e.Message, "format_version");
    }

    [TestMethod]
    public void FromPeftStoresTransposedFactorsWithTheScalingInB()
    {
        const int r = 2, inF = 6, outF = 5;
        string dir = PeftTestFiles.WriteRaw(PeftTestFiles.LoraJson, PeftTestFiles.LoraTensors(r: r, inF: inF, outF: outF));
        using var peft = PeftAdapter.Load(dir);
        var module = peft.Modules.Single();
        float[] a = peft.ReadSingles(module, AdapterTensorRole.LoraA);
        float[] b = peft.ReadSingles(module, AdapterTensorRole.LoraB);
        double s = 4.0 / 2.0; // lora_alpha / r in LoraJson
        var parameters = OnnxAdapterFile.FromPeft(peft);
        Assert.HasCount(2, parameters);
        var pa = parameters[0];
        var pb = parameters[1];
        Assert.AreEqual("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", pa.Name);
        Assert.AreEqual("base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", pb.Name);
        CollectionAssert.AreEqual(new long[] { inF, r }, pa.Shape.ToArray());
        CollectionAssert.AreEqual(new long[] { r, outF }, pb.Shape.ToArray());
        for (int i = 0; i < inF; i++)
        {
            for (int k = 0; k < r; k++)
            {
                Assert.AreEqual(a[(k * inF) + i], BinaryPrimitives.ReadSingleLittleEndian(pa.Data.Span[(4 * ((i * r) + k))..]));
            }
        }
        for (int k = 0; k < r; k++)
        {
            for (int o = 0; o < outF; o++)
            {
                Assert.AreEqual((float)(s * b[(o * r) + k]), BinaryPrimitives.ReadSingleLittleEndian(pb.Data.Span[(4 * ((k * outF) + o))..]));
            }
        }
    }

    [TestMethod]
    public void FromPeftRefusesWhatIsNotTwoFactorsAndSaysWhy()
    {
        string dora = PeftTestFiles.WriteRaw(PeftTestFiles.LoraJson.Replace("\"bias\"", "\"use_dora\": true, \"bias\"", StringComparison.Ordinal),
            [.. PeftTestFiles.LoraTensors(), PeftTestFiles.F32("base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector", [5], 9)]);
        using var doraAdapter = PeftAdapter.Load(dora);
        var e = BadInput.Throws(() => OnnxAdapterFile.FromPeft(doraAdapter));
        StringAssert.Contains(e.Message, "q_proj");
        StringAssert.Contains(e.Message, "DoRA");
        string lora = PeftTestFiles.WriteRaw(PeftTestFiles.LoraJson, PeftTestFiles.LoraTensors());
        using var plain = PeftAdapter.Load(lora);
        BadInput.Throws(() => OnnxAdapterFile.FromPeft(plain, DType.BF16));
    }
}
