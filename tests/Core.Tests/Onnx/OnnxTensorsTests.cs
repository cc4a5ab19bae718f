using Google.Protobuf;
using Onnx;
using OnnxLora.Core.Onnx;

namespace OnnxLora.Core.Tests.Onnx;

[TestClass]
public sealed class OnnxTensorsTests
{
    // Values exactly representable in fp16 and bf16, so every encoding must give them back exactly.
    private static readonly float[] Values = [0f, 1f, -2.5f, 0.125f, 96f, -0.75f];

    [TestMethod]
    [DataRow(DType.F32)]
    [DataRow(DType.F16)]
    [DataRow(DType.BF16)]
    [DataRow(DType.F64)]
    public void ReadAsSingle_FromRawData_DecodesEachFloatType(DType dtype)
    {
        var t = OnnxTensors.Create("t", dtype, [2, 3], Values);
        CollectionAssert.AreEqual(Values, OnnxTensors.ReadAsSingle(t));
    }

    [TestMethod]
    public void ReadAsSingle_FromFloatData_Decodes()
    {
        var t = new TensorProto { Name = "t", DataType = (int)TensorProto.Types.DataType.Float };
        t.Dims.Add(6);
        t.FloatData.Add(Values);
        CollectionAssert.AreEqual(Values, OnnxTensors.ReadAsSingle(t));
    }

    [TestMethod]
    public void ReadAsSingle_Fp16AndBf16FromInt32Data_DecodesBitPatterns()
    {
        // Bit patterns written out by hand: 1.0 = 0x3C00 (fp16) = 0x3F80 (bf16); -2.5 = 0xC100 (fp16) = 0xC020 (bf16).
        var f16 = new TensorProto { Name = "h", DataType = (int)TensorProto.Types.DataType.Float16 };
        f16.Dims.Add(2);
        f16.Int32Data.Add([0x3C00, 0xC100]);
        var bf16 = new TensorProto { Name = "b", DataType = (int)TensorProto.Types.DataType.Bfloat16 };
        bf16.Dims.Add(2);
        bf16.Int32Data.Add([0x3F80, 0xC020]);

        CollectionAssert.AreEqual(new[] { 1f, -2.5f }, OnnxTensors.ReadAsSingle(f16));
        CollectionAssert.AreEqual(new[] { 1f, -2.5f }, OnnxTensors.ReadAsSingle(bf16));
    }

    [TestMethod]
    public void ReadAsSingle_RawLengthWrong_ThrowsNamingTensor()
    {
        var t = new TensorProto { Name = "bad", DataType = (int)TensorProto.Types.DataType.Float, RawData = ByteString.CopyFrom(new byte[6]) };
        t.Dims.Add(2);
        var e = BadInput.Throws(() => OnnxTensors.ReadAsSingle(t));
        StringAssert.Contains(e.Message, "'bad'");
    }

    [TestMethod]
    public void ReadAsSingle_IntegerTensor_Throws()
    {
        var t = OnnxTensors.Create("ids", [2], [1L, 2L]);
        var e = BadInput.Throws(() => OnnxTensors.ReadAsSingle(t));
        StringAssert.Contains(e.Message, "INT64");
    }

    [TestMethod]
    public void ReplaceData_KeepsTypeAndShapeAndClearsTypedFields()
    {
        var t = new TensorProto { Name = "w", DataType = (int)TensorProto.Types.DataType.Float16 };
        t.Dims.Add([2, 3]);
        t.Int32Data.Add([0, 0, 0, 0, 0, 0]);

        OnnxTensors.ReplaceData(t, Values);

        Assert.AreEqual((int)TensorProto.Types.DataType.Float16, t.DataType);
        CollectionAssert.AreEqual(new long[] { 2, 3 }, t.Dims.ToArray());
        Assert.AreEqual(0, t.Int32Data.Count);
        Assert.AreEqual(12, t.RawData.Length);
        CollectionAssert.AreEqual(Values, OnnxTensors.ReadAsSingle(t));
        Assert.ThrowsExactly<ArgumentException>(() => OnnxTensors.ReplaceData(t, [1f]));
    }

    [TestMethod]
    public void Save_TypedFieldsGoExternalAsRawBytes()
    {
        var b = new OnnxGraphBuilder();
        var t = new TensorProto { Name = "w", DataType = (int)TensorProto.Types.DataType.Float };
        t.Dims.Add(6);
        t.FloatData.Add(Values);
        b.AddInitializer(t);
        b.AddOutput("w", DType.F32, 6);
        var model = b.Build();
        string path = Path.Combine(OnnxTestModels.TempFolder(), "m.onnx");

        OnnxFile.Save(model, path, new OnnxSaveOptions { ExternalData = OnnxExternalData.Always, ExternalThresholdBytes = 0 });

        Assert.AreEqual(24L, new FileInfo(path + ".data").Length);
        CollectionAssert.AreEqual(Values, OnnxTensors.ReadAsSingle(OnnxFile.Load(path).Graph.Initializer.Single()));
    }
}
