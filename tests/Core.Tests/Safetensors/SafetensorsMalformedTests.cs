using System.Diagnostics;
using System.Text;
using OnnxLora.Core.Safetensors;

namespace OnnxLora.Core.Tests.Safetensors;

/// <summary>Hostile and broken safetensors files: each must give a bad-input OnnxLoraException naming the file and the problem.</summary>
[TestClass]
public sealed class SafetensorsMalformedTests
{
    private static void AssertRejected(byte[] bytes, params string[] messageParts)
    {
        using var dir = new TempDir();
        string path = dir.File("bad.safetensors");
        File.WriteAllBytes(path, bytes);
        var e = BadInput.Throws(() => SafetensorsFile.Open(path).Dispose());
        StringAssert.Contains(e.Message, "bad.safetensors");
        foreach (string part in messageParts)
        {
            StringAssert.Contains(e.Message, part);
        }
    }

    private static void AssertHeaderRejected(string header, int dataBytes, params string[] messageParts) =>
        AssertRejected(RawSafetensors.Build(header, new byte[dataBytes]), messageParts);

    [TestMethod]
    public void Open_FileShorterThanLengthPrefix_IsRejected() => AssertRejected([1, 2, 3], "at least 8 bytes");

    [TestMethod]
    public void Open_HeaderLengthBeyondFile_IsRejected() =>
        AssertRejected(RawSafetensors.Build("{}", [], declaredHeaderLength: 4096), "header length", "truncated");

    [TestMethod]
    public void Open_ForgedHugeHeaderLength_IsRejectedWithoutAllocating()
    {
        long before = GC.GetAllocatedBytesForCurrentThread();
        AssertRejected(RawSafetensors.Build("{}", [], declaredHeaderLength: 1UL << 60), "header length");
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.IsLessThan(16L << 20, allocated, $"rejecting a forged header allocated {allocated} bytes");
    }

    [TestMethod]
    public void Open_HeaderNotAnObject_IsRejected() => AssertHeaderRejected("[1, 2]  ", 0, "'{'");

    [TestMethod]
    public void Open_TruncatedJson_IsRejected() =>
        AssertHeaderRejected("""{"a":{"dtype":"F32","shape":[1],"data_of""", 4, "JSON");

    [TestMethod]
    public void Open_NonUtf8TensorName_IsRejected()
    {
        byte[] header = [.. Encoding.ASCII.GetBytes("{\""), 0xC3, 0x28, .. Encoding.ASCII.GetBytes("\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}")];
        AssertRejected(RawSafetensors.Build(header, new byte[4]), "UTF-8");
    }

    [TestMethod]
    public void Open_DuplicateTensorName_IsRejected() => AssertHeaderRejected(
        """{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}""", 8, "'a' twice");

    [TestMethod]
    public void Open_UnknownDtype_IsRejected() =>
        AssertHeaderRejected("""{"a":{"dtype":"F8_E9","shape":[1],"data_offsets":[0,1]}}""", 1, "tensor 'a' dtype", "F8_E9");

    [TestMethod]
    public void Open_ShapeWhoseProductOverflows_IsRejected() => AssertHeaderRejected(
        """{"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,4]}}""", 4, "tensor 'a' shape", "64 bits");

    [TestMethod]
    public void Open_ByteLengthDisagreesWithShape_IsRejected() =>
        AssertHeaderRejected("""{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}""", 8, "tensor 'a' byte length", "12 bytes");

    [TestMethod]
    public void Open_OffsetsOutsideData_AreRejected() =>
        AssertHeaderRejected("""{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}""", 8, "tensor 'a' data_offsets", "<= 8");

    [TestMethod]
    public void Open_OverlappingTensors_AreRejected() => AssertHeaderRejected(
        """{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}""", 12, "overlapping");

    [TestMethod]
    public void Open_HoleBetweenTensors_IsRejected() => AssertHeaderRejected(
        """{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}""", 12, "gap of 4 bytes");

    [TestMethod]
    public void Open_TrailingBytesAfterTensors_AreRejected() =>
        AssertHeaderRejected("""{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""", 8, "data section", "8 bytes");

    [TestMethod]
    public void Open_NegativeDimension_IsRejected() =>
        AssertHeaderRejected("""{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}""", 4, "tensor 'a' shape", "non-negative");

    [TestMethod]
    public void Open_ThreeDataOffsets_AreRejected() =>
        AssertHeaderRejected("""{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}""", 4, "tensor 'a' data_offsets");

    [TestMethod]
    public void Open_MissingDtype_IsRejected() =>
        AssertHeaderRejected("""{"a":{"shape":[1],"data_offsets":[0,4]}}""", 4, "tensor 'a'", "dtype, shape and data_offsets");

    [TestMethod]
    public void Open_NonStringMetadataValue_IsRejected() =>
        AssertHeaderRejected("""{"__metadata__":{"format":7}}""", 0, "__metadata__['format']", "a string");

    [TestMethod]
    public void Open_TooDeeplyNestedHeader_IsRejected() =>
        AssertHeaderRejected("{\"a\":{\"x\":" + new string('[', 5000) + new string(']', 5000) + "}}", 0, "JSON");

    [TestMethod]
    public void Checkpoint_IndexEscapingFolder_IsRejected()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File(SafetensorsCheckpoint.IndexFileName), """{"weight_map":{"w":"../outside.safetensors"}}""");
        var e = BadInput.Throws(() => SafetensorsCheckpoint.Open(dir.Path).Dispose());
        StringAssert.Contains(e.Message, "weight_map['w']");
        StringAssert.Contains(e.Message, "no folders");
    }

    [TestMethod]
    public void Checkpoint_IndexNamingMissingShard_IsRejected()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File(SafetensorsCheckpoint.IndexFileName), """{"weight_map":{"w":"model-1.safetensors"}}""");
        var e = BadInput.Throws(() => SafetensorsCheckpoint.Open(dir.Path).Dispose());
        StringAssert.Contains(e.Message, "model-1.safetensors");
    }

    [TestMethod]
    public void Checkpoint_ShardTensorMissingFromIndex_IsRejected()
    {
        using var dir = new TempDir();
        SafetensorsWriter.Save(dir.File("s1.safetensors"), [
            (new TensorSpec("w", DType.F32, [1]), new byte[4]), (new TensorSpec("extra", DType.F32, [1]), new byte[4])]);
        File.WriteAllText(dir.File(SafetensorsCheckpoint.IndexFileName), """{"weight_map":{"w":"s1.safetensors"}}""");
        var e = BadInput.Throws(() => SafetensorsCheckpoint.Open(dir.Path).Dispose());
        StringAssert.Contains(e.Message, "'extra'");
    }

    [TestMethod]
    public void Checkpoint_FolderWithoutWeights_NamesTheExpectedFiles()
    {
        using var dir = new TempDir();
        var e = BadInput.Throws(() => SafetensorsCheckpoint.Open(dir.Path).Dispose());
        StringAssert.Contains(e.Message, "model.safetensors");
    }

    [TestMethod]
    public void Open_RandomMutationsOfValidFile_OnlyEverRaiseBadInput()
    {
        using var dir = new TempDir();
        string valid = dir.File("valid.safetensors");
        SafetensorsWriter.Save(valid, [
            (new TensorSpec("a", DType.F32, [2, 3]), new byte[24]), (new TensorSpec("b", DType.BF16, [5]), new byte[10])],
            new Dictionary<string, string> { ["format"] = "pt" });
        byte[] original = File.ReadAllBytes(valid);
        var rng = new Random(1234);
        string path = dir.File("mutant.safetensors");
        int rejected = 0;
        var watch = Stopwatch.StartNew();
        for (int i = 0; i < 500; i++)
        {
            byte[] mutant = (byte[])original.Clone();
            int flips = rng.Next(1, 4);
            for (int f = 0; f < flips; f++)
            {
                mutant[rng.Next(mutant.Length)] = (byte)rng.Next(256);
            }
            if (rng.Next(4) == 0)
            {
                Array.Resize(ref mutant, rng.Next(mutant.Length));
            }
            File.WriteAllBytes(path, mutant);
            try
            {
                using var file = SafetensorsFile.Open(path);
                foreach (var t in file.Tensors)
                {
                    _ = file.GetBytes(t).Length;
                }
            }
            catch (OnnxLoraException e) when (e.Kind == ErrorKind.BadInput)
            {
                rejected++;
            }
        }
        Assert.IsGreaterThan(100, rejected, "most random mutations of the header should be caught");
    }
}
