using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using OnnxLora.Core;
using OnnxLora.Validate.Internals;

namespace OnnxLora.Validate.Tests;

[TestClass]
public sealed class OrtTypesTests
{
    [TestMethod]
    [DataRow(DType.F32, TensorElementType.Float, "float32")]
    [DataRow(DType.F16, TensorElementType.Float16, "float16")]
    [DataRow(DType.BF16, TensorElementType.BFloat16, "bfloat16")]
    [DataRow(DType.F64, TensorElementType.Double, "float64")]
    [DataRow(DType.I64, TensorElementType.Int64, "int64")]
    [DataRow(DType.I32, TensorElementType.Int32, "int32")]
    [DataRow(DType.Bool, TensorElementType.Bool, "bool")]
    public void SupportedTypes_MapBothWays_AndHaveTheirReportName(DType dtype, TensorElementType ort, string name)
    {
        Assert.AreEqual(ort, OrtTypes.ToOrt(dtype, "input x"));
        Assert.IsTrue(OrtTypes.TryDType(ort, out var back));
        Assert.AreEqual(dtype, back);
        Assert.AreEqual(name, dtype.ReportName());
    }

    [TestMethod]
    [DataRow(DType.I16, "int16")]
    [DataRow(DType.I8, "int8")]
    [DataRow(DType.U8, "uint8")]
    public void ToOrt_TypeValidateDoesNotHandle_ThrowsNamingTheTensorAndType(DType dtype, string name)
    {
        var e = BadInput.Throws(() => OrtTypes.ToOrt(dtype, "input input_ids"));

        StringAssert.StartsWith(e.Message, "input input_ids: element type: found " + name + ", expected float32,");
    }

    [TestMethod]
    [DataRow(TensorElementType.Int8)]
    [DataRow(TensorElementType.UInt8)]
    [DataRow(TensorElementType.Int16)]
    [DataRow(TensorElementType.UInt64)]
    [DataRow(TensorElementType.String)]
    [DataRow(TensorElementType.Complex64)]
    public void TryDType_OrtTypeValidateDoesNotHandle_IsFalse(TensorElementType ort)
    {
        Assert.IsFalse(OrtTypes.TryDType(ort, out _));
    }

    [TestMethod]
    public void ToHost_Int8Output_ThrowsNamingTheOutputAndType()
    {
        using var value = OrtValue.CreateTensorValueFromMemory(new sbyte[] { 1, 2 }, [2]);

        var e = BadInput.Throws(() => OrtTypes.ToHost("logits", value));

        StringAssert.Contains(e.Message, "output logits");
        StringAssert.Contains(e.Message, "Int8");
    }

    [TestMethod]
    public void ToHost_Float16Output_IsWidenedToFloat32WithItsType()
    {
        Float16[] data = [(Float16)1.5f, (Float16)(-2f)];
        using var value = OrtValue.CreateTensorValueFromMemory(data, [1, 2]);

        var host = OrtTypes.ToHost("y", value);

        Assert.AreEqual(DType.F16, host.ElementType);
        CollectionAssert.AreEqual(new long[] { 1, 2 }, host.Shape);
        CollectionAssert.AreEqual(new[] { 1.5f, -2f }, host.Data);
    }
}
