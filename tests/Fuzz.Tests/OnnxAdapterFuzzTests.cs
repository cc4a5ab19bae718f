using OnnxLora.Core;
using OnnxLora.Core.Onnx;

namespace OnnxLora.Fuzz.Tests;

[TestClass]
public sealed class OnnxAdapterFuzzTests
{
    public TestContext TestContext { get; set; } = null!;

    private static byte[] ValidFile()
    {
        var rng = new Random(5);
        byte[] Bytes(int n)
        {
            var b = new byte[n];
            rng.NextBytes(b);
            return b;
        }
        return OnnxAdapterFile.Serialize([
            new OnnxAdapterParameter("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", DType.F32, [8, 2], Bytes(64)),
            new OnnxAdapterParameter("base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", DType.F16, [2, 8], Bytes(32)),
            new OnnxAdapterParameter("empty", DType.F32, [8, 0], Bytes(0)),
        ], adapterVersion: 1, modelVersion: 1).ToArray();
    }

    /// <summary>
    /// Reads and verifies the adapter file and touches every parameter's bytes. Documented for a malformed file:
    /// bad-input OnnxLoraException (OnnxAdapterFile.Read: not an adapter FlatBuffer, verification failed, another format
    /// version, or a parameter whose type, shape or data length is wrong). Nothing else: an offset or length from the
    /// file must be verified before it is followed.
    /// </summary>
    private static FuzzTarget Target() => new("ONNX Runtime adapter", ValidFile(), "a.onnx_adapter", _ => { }, dir =>
    {
        var adapter = OnnxAdapterFile.Read(Path.Combine(dir, "a.onnx_adapter"));
        foreach (var p in adapter.Parameters)
        {
            _ = p.Data.Span.IndexOf((byte)0x7F);
        }
    }, [typeof(OnnxLoraException)]);

    [TestMethod]
    public void MutatedOnnxAdapter_FixedCorpus_Reproduces() => CampaignAssert.CorpusReproduces(Target(), TestContext);

    [TestMethod]
    public void MutatedOnnxAdapter_EitherReadsOrRaisesBadInput_InBoundedMemory() => CampaignAssert.TimedCampaignStaysInBounds(Target(), TestContext);
}
