using OnnxLora.Core;
using OnnxLora.Core.Safetensors;

namespace OnnxLora.Fuzz.Tests;

[TestClass]
public sealed class SafetensorsFuzzTests
{
    public TestContext TestContext { get; set; } = null!;

    private static byte[] ValidFile()
    {
        string src = Path.Combine(Path.GetTempPath(), "onnxlora-fuzz-src-" + Guid.NewGuid().ToString("N") + ".safetensors");
        var rng = new Random(3);
        byte[] Bytes(int n)
        {
            var b = new byte[n];
            rng.NextBytes(b);
            return b;
        }
        SafetensorsWriter.Save(src, [
            (new TensorSpec("model.layers.0.self_attn.q_proj.weight", DType.F32, [4, 4]), Bytes(64)),
            (new TensorSpec("model.layers.0.self_attn.q_proj.lora_A.weight", DType.BF16, [2, 4]), Bytes(16)),
            (new TensorSpec("ids", DType.I64, [3]), Bytes(24)),
            (new TensorSpec("half", DType.F16, [5]), Bytes(10)),
        ], new Dictionary<string, string> { ["format"] = "pt" });
        byte[] original = File.ReadAllBytes(src);
        File.Delete(src);
        return original;
    }

    /// <summary>
    /// Opens the file and reads every tensor (floats as singles, the rest as int64). Documented for a malformed
    /// file: bad-input OnnxLoraException (SafetensorsFile.Open: not a valid safetensors file; ReadSingles/ReadInt64s: a
    /// dtype of the wrong kind). Nothing else: a header length, shape or offset from the file must be checked
    /// before anything is allocated or read from it.
    /// </summary>
    private static FuzzTarget Target() => new("safetensors", ValidFile(), "m.safetensors", _ => { }, dir =>
    {
        using var file = SafetensorsFile.Open(Path.Combine(dir, "m.safetensors"));
        foreach (var t in file.Tensors)
        {
            _ = t.DType.IsFloat() ? file.ReadSingles(t).Length : file.ReadInt64s(t).Length;
        }
    }, [typeof(OnnxLoraException)]);

    [TestMethod]
    public void MutatedSafetensors_FixedCorpus_Reproduces() => CampaignAssert.CorpusReproduces(Target(), TestContext);

    [TestMethod]
    public void MutatedSafetensors_EitherOpenOrRaiseBadInput_InBoundedMemory() => CampaignAssert.TimedCampaignStaysInBounds(Target(), TestContext);
}
