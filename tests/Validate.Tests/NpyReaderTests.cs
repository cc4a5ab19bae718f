using OnnxLora.Core;
using OnnxLora.Validate.Internals;

namespace OnnxLora.Validate.Tests;

[TestClass]
public sealed class NpyReaderTests
{
    [TestMethod]
    public void Read_Int64Version1_ReturnsShapeAndValues()
    {
        using var f = new TestFiles();
        string path = Npy.Write(f.File("a.npy"), Npy.Bytes("<i8", [2, 3], Npy.Int64([1, 2, 3, -4, 5, long.MaxValue])));

        var a = NpyReader.Read(path);

        Assert.AreEqual(DType.I64, a.ElementType);
        CollectionAssert.AreEqual(new long[] { 2, 3 }, a.Shape);
        CollectionAssert.AreEqual(new long[] { 1, 2, 3, -4, 5, long.MaxValue }, (long[])a.Data);
    }

    [TestMethod]
    public void Read_Float32Version2_ReturnsValues()
    {
        using var f = new TestFiles();
        string path = Npy.Write(f.File("a.npy"), Npy.Bytes("<f4", [4], Npy.Float32([0.5f, -1.25f, 3e-8f, 1e30f]), major: 2));

        var a = NpyReader.Read(path);

        Assert.AreEqual(DType.F32, a.ElementType);
        CollectionAssert.AreEqual(new long[] { 4 }, a.Shape);
        CollectionAssert.AreEqual(new[] { 0.5f, -1.25f, 3e-8f, 1e30f }, (float[])a.Data);
    }

    [TestMethod]
    public void Read_Float16_ReturnsHalfValues()
    {
        using var f = new TestFiles();
        Half[] values = [(Half)1.5, (Half)(-2), Half.MaxValue];
        string path = Npy.Write(f.File("a.npy"), Npy.Bytes("<f2", [1, 3], Npy.Float16(values)));

        var a = NpyReader.Read(path);

        Assert.AreEqual(DType.F16, a.ElementType);
        CollectionAssert.AreEqual(values, (Half[])a.Data);
    }

    [TestMethod]
    public void Read_ScalarShape_HasOneElement()
    {
        using var f = new TestFiles();
        string path = Npy.Write(f.File("a.npy"), Npy.Bytes("<i8", [], Npy.Int64([42])));

        var a = NpyReader.Read(path);

        Assert.AreEqual(0, a.Shape.Length);
        CollectionAssert.AreEqual(new long[] { 42 }, (long[])a.Data);
    }

    [TestMethod]
    [DataRow("magic", "npy magic")]
    [DataRow("version", "npy format version")]
    [DataRow("bigEndian", "'descr'")]
    [DataRow("float64", "'descr'")]
    [DataRow("fortran", "'fortran_order'")]
    [DataRow("noShape", "'shape'")]
    [DataRow("badShape", "'shape'")]
    [DataRow("notDict", "npy header")]
    [DataRow("truncatedData", "npy data")]
    [DataRow("extraData", "npy data")]
    [DataRow("hugeShape", "npy data")]
    [DataRow("overflowShape", "npy shape")]
    [DataRow("headerPastEnd", "npy header length")]
    [DataRow("tiny", "npy preamble")]
    public void Read_Malformed_IsBadInputNamingFileAndField(string kind, string field)
    {
        using var f = new TestFiles();
        byte[] good = Npy.Bytes("<i8", [2, 2], Npy.Int64([1, 2, 3, 4]));
        byte[] bytes = kind switch
        {
            "magic" => [.. good.Select((b, i) => i == 1 ? (byte)'X' : b)],
            "version" => [.. good.Select((b, i) => i == 6 ? (byte)9 : b)],
            "bigEndian" => Npy.Bytes(">i8", [2, 2], Npy.Int64([1, 2, 3, 4])),
            "float64" => Npy.Bytes("<f8", [2, 2], new byte[32]),
            "fortran" => Npy.Bytes("<i8", [2, 2], Npy.Int64([1, 2, 3, 4]), fortran: true),
            "noShape" => Npy.Bytes("<i8", [2, 2], Npy.Int64([1, 2, 3, 4]), headerOverride: "{'descr': '<i8', 'fortran_order': False, }"),
            "badShape" => Npy.Bytes("<i8", [2, 2], Npy.Int64([1, 2, 3, 4]), headerOverride: "{'descr': '<i8', 'fortran_order': False, 'shape': (2, -2), }"),
            "notDict" => Npy.Bytes("<i8", [2, 2], Npy.Int64([1, 2, 3, 4]), headerOverride: "descr <i8"),
            "truncatedData" => good[..^8],
            "extraData" => [.. good, 0, 0, 0, 0, 0, 0, 0, 0],
            "hugeShape" => Npy.Bytes("<i8", [40000, 50000], Npy.Int64([1, 2])),
            "overflowShape" => Npy.Bytes("<i8", [1L << 40, 1L << 40], Npy.Int64([1])),
            "headerPastEnd" => good[..20],
            "tiny" => good[..5],
            _ => throw new ArgumentOutOfRangeException(nameof(kind)),
        };
        string path = Npy.Write(f.File($"{kind}.npy"), bytes);

        var e = BadInput.Throws(() => NpyReader.Read(path));

        StringAssert.StartsWith(e.Message, path);
        StringAssert.Contains(e.Message, field);
        StringAssert.Contains(e.Message, "found");
    }

    [TestMethod]
    public void Run_NpyInputs_AreFedToEveryModel()
    {
        using var f = new TestFiles();
        long[] ids = [3, 4, 5, 6, 7, 8];
        long[] mask = [1, 1, 1, 1, 1, 0];
        string idsPath = Npy.Write(f.File("input_ids.npy"), Npy.Bytes("<i8", [2, 3], Npy.Int64(ids)));
        string maskPath = Npy.Write(f.File("m.npy"), Npy.Bytes("<i8", [2, 3], Npy.Int64(mask)));
        long[]? seenIds = null;
        var request = new ValidationRequest(f.Merged(), f.Unmerged())
        {
            EagerReference = inputs =>
            {
                seenIds = inputs["input_ids"].GetData<long>().ToArray();
                return new Dictionary<string, float[]>();
            },
        };

        var report = Validator.Run(request, TestFiles.Cpu with { InputFiles = [idsPath, $"attention_mask={maskPath}"] });

        CollectionAssert.AreEqual(ids, seenIds);
        Assert.IsFalse(report.Inputs.Generated);
        var summary = report.Inputs.Tensors.Single(t => t.Name == "attention_mask");
        Assert.AreEqual($"npy: {maskPath}", summary.Source);
        CollectionAssert.AreEqual(new long[] { 2, 3 }, summary.Shape.ToArray());
        Assert.AreEqual(ValidationStatus.Pass, report.Status);
    }

    [TestMethod]
    public void Run_NpyWithWrongDtype_ThrowsNamingInputAndDtype()
    {
        using var f = new TestFiles();
        string idsPath = Npy.Write(f.File("input_ids.npy"), Npy.Bytes("<f4", [1, 2], Npy.Float32([1, 2])));
        string maskPath = Npy.Write(f.File("attention_mask.npy"), Npy.Bytes("<i8", [1, 2], Npy.Int64([1, 1])));

        var e = BadInput.Throws(() =>
            Validator.Run(new ValidationRequest(f.Merged(), f.Unmerged()), TestFiles.Cpu with { InputFiles = [idsPath, maskPath] }));

        StringAssert.StartsWith(e.Message, idsPath);
        StringAssert.Contains(e.Message, "input input_ids dtype: found float32, expected int64");
    }
}
