using OnnxLora.Core.IO;
using OnnxLora.Core.Safetensors;

namespace OnnxLora.Core.Tests.IO;

[TestClass]
public sealed class FileRangeTests
{
    private static byte[] Pattern(int n, int seed)
    {
        var bytes = new byte[n];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    [TestMethod]
    public void Copy_RangeInsideAFile_LandsAtTheGivenOffsetAndMovesNoPosition()
    {
        using var dir = new TempDir();
        byte[] source = Pattern(3 << 20, 1);
        File.WriteAllBytes(dir.File("in.bin"), source);
        byte[] before = Pattern(1000, 2);
        using (var input = File.OpenHandle(dir.File("in.bin")))
        using (var output = new FileStream(dir.File("out.bin"), FileMode.CreateNew, FileAccess.ReadWrite))
        {
            output.Write(before);
            output.Flush();
            FileRange.Copy(input, 12345, output.SafeFileHandle, 1000, (2 << 20) + 7);
            output.Position = 1000 + (2 << 20) + 7;
            output.Write([9, 9]);
        }
        byte[] written = File.ReadAllBytes(dir.File("out.bin"));
        byte[] expected = [.. before, .. source.AsSpan(12345, (2 << 20) + 7), 9, 9];
        CollectionAssert.AreEqual(expected, written);
    }

    [TestMethod]
    public void Copy_PastTheEndOfTheSource_Throws()
    {
        using var dir = new TempDir();
        File.WriteAllBytes(dir.File("in.bin"), Pattern(100, 3));
        using var input = File.OpenHandle(dir.File("in.bin"));
        using var output = File.OpenHandle(dir.File("out.bin"), FileMode.CreateNew, FileAccess.ReadWrite);
        Assert.ThrowsExactly<EndOfStreamException>(() => FileRange.Copy(input, 50, output, 0, 51));
    }

    [TestMethod]
    public void SafetensorsWriter_CopyFromBetweenWrites_WritesTheSameFileAsWrite()
    {
        using var dir = new TempDir();
        byte[] a = Pattern(4096 * 4, 4), b = Pattern(300 * 4, 5), c = Pattern(12 * 4, 6);
        var specs = new List<TensorSpec> { new("a", DType.F32, [4096]), new("b", DType.F32, [300]), new("c", DType.F32, [12]) };
        File.WriteAllBytes(dir.File("raw.bin"), [.. new byte[17], .. b]);
        using (var w = SafetensorsWriter.Create(dir.File("copied.safetensors"), specs))
        using (var raw = File.OpenHandle(dir.File("raw.bin")))
        {
            w.Write("a", a);
            w.CopyFrom("b", raw, 17, b.Length);
            w.Write("c", c);
            w.Commit();
        }
        SafetensorsWriter.Save(dir.File("written.safetensors"), [(specs[0], a), (specs[1], b), (specs[2], c)]);
        CollectionAssert.AreEqual(File.ReadAllBytes(dir.File("written.safetensors")), File.ReadAllBytes(dir.File("copied.safetensors")));
    }
}
