using OnnxLora.Validate.Internals;

namespace OnnxLora.Validate.Tests;

[TestClass]
public sealed class OnnxFileScanTests
{
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
}
