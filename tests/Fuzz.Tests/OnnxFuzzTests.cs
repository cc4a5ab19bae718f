using OnnxLora.Core;
using OnnxLora.Core.Onnx;

namespace OnnxLora.Fuzz.Tests;

[TestClass]
public sealed class OnnxFuzzTests
{
    public TestContext TestContext { get; set; } = null!;

    private static byte[] ValidModel()
    {
        var b = new OnnxGraphBuilder(17);
        string ids = b.AddInput("input_ids", DType.I64, "batch", "sequence");
        string table = b.AddInitializer("model.embed_tokens.weight", DType.F32, [10, 4], Enumerable.Range(0, 40).Select(i => i * 0.1f).ToArray());
        string w = b.AddInitializer("lm_head.weight_T", DType.F32, [4, 10], Enumerable.Range(0, 40).Select(i => -i * 0.05f).ToArray());
        string h = b.AddNode("Gather", [table, ids], "embed");
        string logits = b.AddNode("MatMul", [h, w], "head");
        b.AddNode("Identity", [logits], ["logits"], "out");
        b.AddOutput("logits", DType.F32, "batch", "sequence", 10);
        b.AddMetadata("adapter", "fuzz");
        return OnnxFile.ToBytes(b.Build());
    }

    /// <summary>
    /// Loads the model and decodes its float initializers. Documented for a malformed file:
    /// bad-input OnnxLoraException (OnnxFile.Load: the file or its external data is malformed; OnnxTensors.ReadAsSingle:
    /// element type or data length wrong). Load's FileNotFoundException and ReadAsSingle's InvalidOperationException
    /// (external data not loaded) are documented too but cannot happen here — the file exists and Load loads
    /// external data — so they fail the campaign.
    /// </summary>
    private static FuzzTarget Target() => new("ONNX model", ValidModel(), "model.onnx", _ => { }, dir =>
    {
        var model = OnnxFile.Load(Path.Combine(dir, "model.onnx"));
        foreach (var t in model.Graph.Initializer)
        {
            if (t.DataType == (int)Onnx.TensorProto.Types.DataType.Float)
            {
                _ = OnnxTensors.ReadAsSingle(t);
            }
        }
    }, [typeof(OnnxLoraException)]);

    [TestMethod]
    public void MutatedOnnxModel_FixedCorpus_Reproduces() => CampaignAssert.CorpusReproduces(Target(), TestContext);

    [TestMethod]
    public void MutatedOnnxModel_EitherLoadsOrRaisesBadInput_InBoundedMemory() => CampaignAssert.TimedCampaignStaysInBounds(Target(), TestContext);
}
