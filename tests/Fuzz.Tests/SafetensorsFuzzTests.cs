using CsCheck;
using OnnxLora.Core;
using OnnxLora.Core.Safetensors;

namespace OnnxLora.Fuzz.Tests;

[TestClass]
public sealed class SafetensorsFuzzTests
{
    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    public void MutatedSafetensors_EitherOpenOrRaiseInvalidData()
    {
        string dir = Path.Combine(Path.GetTempPath(), "onnxlora-fuzz-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            string valid = Path.Combine(dir, "valid.safetensors");
            var rng = new Random(3);
            var tensors = new (TensorSpec, ReadOnlyMemory<byte>)[]
            {
                (new TensorSpec("model.layers.0.self_attn.q_proj.weight", DType.F32, [4, 4]), RandomBytes(rng, 64)),
                (new TensorSpec("model.layers.0.self_attn.q_proj.lora_A.weight", DType.BF16, [2, 4]), RandomBytes(rng, 16)),
                (new TensorSpec("ids", DType.I64, [3]), RandomBytes(rng, 24)),
                (new TensorSpec("half", DType.F16, [5]), RandomBytes(rng, 10)),
            };
            SafetensorsWriter.Save(valid, tensors, new Dictionary<string, string> { ["format"] = "pt" });
            byte[] original = File.ReadAllBytes(valid);
            long tried = 0, opened = 0, rejected = 0;
            int worker = 0;

            Mutator.Mutants(original).Sample(mutant =>
            {
                string path = Path.Combine(dir, $"m{Interlocked.Increment(ref worker) % 64}.safetensors");
                File.WriteAllBytes(path, mutant);
                Interlocked.Increment(ref tried);
                try
                {
                    using var file = SafetensorsFile.Open(path);
                    foreach (var t in file.Tensors)
                    {
                        if (t.DType.IsFloat())
                        {
                            _ = file.ReadSingles(t);
                        }
                        else
                        {
                            _ = file.ReadInt64s(t);
                        }
                    }
                    Interlocked.Increment(ref opened);
                }
                catch (InvalidDataException)
                {
                    Interlocked.Increment(ref rejected);
                }
            }, time: Mutator.Seconds, threads: 1);

            TestContext.WriteLine($"safetensors fuzz: {tried} mutated files, {opened} opened, {rejected} rejected with InvalidDataException, 0 other outcomes");
            Assert.IsGreaterThan(0, rejected);
            Assert.AreEqual(tried, opened + rejected);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static byte[] RandomBytes(Random rng, int n)
    {
        var b = new byte[n];
        rng.NextBytes(b);
        return b;
    }
}
