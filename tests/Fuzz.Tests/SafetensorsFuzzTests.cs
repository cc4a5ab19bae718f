using OnnxLora.Core;
using OnnxLora.Core.Safetensors;

namespace OnnxLora.Fuzz.Tests;

[TestClass]
public sealed class SafetensorsFuzzTests
{
    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    public void MutatedSafetensors_EitherOpenOrRaiseBadInput()
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

        var r = Campaign.Run(original, "m.safetensors", _ => { }, dir =>
        {
            using var file = SafetensorsFile.Open(Path.Combine(dir, "m.safetensors"));
            foreach (var t in file.Tensors)
            {
                _ = t.DType.IsFloat() ? file.ReadSingles(t).Length : file.ReadInt64s(t).Length;
            }
        });

        TestContext.WriteLine($"safetensors fuzz: {r.Tried} mutated files, {r.Accepted} opened, {r.Rejected} rejected as bad input, 0 other outcomes");
        Assert.IsGreaterThan(0, r.Rejected);
        Assert.AreEqual(r.Tried, r.Accepted + r.Rejected);
    }
}
