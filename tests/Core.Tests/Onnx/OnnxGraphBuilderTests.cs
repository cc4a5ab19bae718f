using Onnx;
using OnnxLora.Core.Onnx;

namespace OnnxLora.Core.Tests.Onnx;

[TestClass]
public sealed class OnnxGraphBuilderTests
{
    [TestMethod]
    [DataRow(17, 8L)]
    [DataRow(18, 8L)]
    [DataRow(19, 9L)]
    [DataRow(20, 9L)]
    [DataRow(21, 10L)]
    [DataRow(13, 7L)]
    public void Build_DeclaresIrVersionOfTheOpsetsRelease(int opset, long ir)
    {
        var model = OnnxTestModels.Linear(rows: 3, opset: opset);
        Assert.AreEqual(ir, model.IrVersion);
        Assert.AreEqual(opset, model.OpsetImport.Single(o => o.Domain == string.Empty).Version);
    }

    [TestMethod]
    public void Constructor_UnsupportedOpset_Throws()
    {
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new OnnxGraphBuilder(22));
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new OnnxGraphBuilder(10));
    }

    [TestMethod]
    public void Build_SameCallsTwice_GivesIdenticalBytes()
    {
        CollectionAssert.AreEqual(OnnxFile.ToBytes(OnnxTestModels.Linear()), OnnxFile.ToBytes(OnnxTestModels.Linear()));
    }

    [TestMethod]
    public void AddInput_WritesSymbolicAndFixedDims()
    {
        var b = new OnnxGraphBuilder();
        b.AddInput("input_ids", DType.I64, "batch", "sequence", 7);
        b.AddOutput("input_ids", DType.I64, "batch", "sequence", 7);
        var input = b.Build().Graph.Input.Single();

        Assert.AreEqual((int)TensorProto.Types.DataType.Int64, input.Type.TensorType.ElemType);
        var dims = input.Type.TensorType.Shape.Dim;
        Assert.AreEqual("batch", dims[0].DimParam);
        Assert.AreEqual("sequence", dims[1].DimParam);
        Assert.AreEqual(7L, dims[2].DimValue);
    }

    [TestMethod]
    public void AddNode_GeneratesUniqueNodeAndOutputNames()
    {
        var b = new OnnxGraphBuilder();
        b.AddInput("x", DType.F32, 2);
        string a1 = b.AddNode("Relu", ["x"], "/layer/Relu");
        string a2 = b.AddNode("Relu", [a1], "/layer/Relu");
        var split = b.AddNode("Split", [a2], 2, null, OnnxAttributes.Int("axis", 0), OnnxAttributes.Ints("split", 1, 1));
        b.AddOutput(split[1], DType.F32, 1);
        var graph = b.Build().Graph;

        Assert.AreEqual("/layer/Relu_output_0", a1);
        Assert.AreEqual("/layer/Relu_1_output_0", a2);
        CollectionAssert.AreEqual(new[] { "/layer/Relu", "/layer/Relu_1", "/Split" }, graph.Node.Select(n => n.Name).ToArray());
        CollectionAssert.AreEqual(new[] { "/Split_output_0", "/Split_output_1" }, split.ToArray());
        CollectionAssert.AreEqual(new[] { "axis", "split" }, graph.Node[2].Attribute.Select(a => a.Name).ToArray());
    }

    [TestMethod]
    public void AddInitializer_DuplicateName_Throws()
    {
        var b = new OnnxGraphBuilder();
        b.AddInitializer("w", DType.F32, [1], [1f]);
        var e = Assert.ThrowsExactly<ArgumentException>(() => b.AddInitializer("w", DType.F32, [1], [2f]));
        StringAssert.Contains(e.Message, "'w'");
    }

    [TestMethod]
    public void AddInitializer_DataNotMatchingShape_Throws()
    {
        var b = new OnnxGraphBuilder();
        var e = Assert.ThrowsExactly<ArgumentException>(() => b.AddInitializer("w", DType.F32, [2, 3], [1f, 2f]));
        StringAssert.Contains(e.Message, "'w'");
    }

    [TestMethod]
    public void AddNode_UndefinedInput_ThrowsNamingIt()
    {
        var b = new OnnxGraphBuilder();
        b.AddInput("x", DType.F32, 2);
        var e = Assert.ThrowsExactly<ArgumentException>(() => b.AddNode("Add", ["x", "missing"], "/add"));
        StringAssert.Contains(e.Message, "'missing'");
        StringAssert.Contains(e.Message, "/add");
    }

    [TestMethod]
    public void Build_OutputNamingNothing_Throws()
    {
        var b = new OnnxGraphBuilder();
        b.AddInput("x", DType.F32, 2);
        b.AddOutput("y", DType.F32, 2);
        var e = Assert.ThrowsExactly<InvalidOperationException>(() => b.Build());
        StringAssert.Contains(e.Message, "'y'");
    }

    [TestMethod]
    public void AddConstant_IdenticalValues_ShareOneInitializer()
    {
        var b = new OnnxGraphBuilder();
        string c1 = b.AddConstant("axes", [1], [-1L]);
        string c2 = b.AddConstant("axes", [1], [-1L]);
        string c3 = b.AddConstant("axes", [1], [0L]);
        string f1 = b.AddConstant("eps", DType.F16, [], [1e-5f]);

        Assert.AreEqual(c1, c2);
        Assert.AreNotEqual(c1, c3);
        Assert.AreEqual("axes_1", c3);
        Assert.AreEqual(3, b.Initializers.Count);
        Assert.AreEqual((int)TensorProto.Types.DataType.Float16, b.Initializers.Single(t => t.Name == f1).DataType);
    }

    [TestMethod]
    public void Build_WritesProducerAndMetadataInOrder()
    {
        var b = new OnnxGraphBuilder();
        b.AddInput("x", DType.F32, 1);
        b.AddOutput("x", DType.F32, 1);
        b.AddMetadata("b", "2");
        b.AddMetadata("a", "1");
        b.AddOpsetImport("com.microsoft", 1);
        var model = b.Build(producerName: "OnnxLora", producerVersion: "0.1");

        Assert.AreEqual("OnnxLora", model.ProducerName);
        CollectionAssert.AreEqual(new[] { "b", "a" }, model.MetadataProps.Select(m => m.Key).ToArray());
        Assert.AreEqual(1L, model.OpsetImport.Single(o => o.Domain == "com.microsoft").Version);
        Assert.ThrowsExactly<InvalidOperationException>(() => b.AddInput("z", DType.F32, 1));
    }
}
