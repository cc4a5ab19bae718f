using OnnxLora.Core;
using OnnxLora.Core.Peft;
using OnnxLora.Models.Llama;
using OnnxLora.Models.Lora;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace OnnxLora.Models.Tests.Lora;

[TestClass]
public sealed class FrozenBaseWeightsTests
{
    private static readonly long[] Tokens = [1, 5, 9, 33, 2, 60, 7, 7, 12, 40, 41, 3];

    [TestMethod]
    public void Convert_TiedQwen2_NarrowsFrozenWeightsOnly_AndComputesCloseToFp32()
    {
        using var reference = LlamaForCausalLM.CreateRandom(TinyConfigs.Qwen2(), seed: 2, std: 0.2);
        using var model = LlamaForCausalLM.CreateRandom(TinyConfigs.Qwen2(), seed: 2, std: 0.2);
        var config = new PeftAdapterConfig { TargetModules = TargetModules.FromList("q_proj", "v_proj"), R = 4, Alpha = 8 };
        LoraInjection.Apply(reference, config, seed: 3);
        LoraInjection.Apply(model, config, seed: 3);
        foreach (var m in new[] { reference, model })
        {
            // Non-zero B, so that the LoRA branch takes part in the comparison.
            using var noGrad = no_grad();
            foreach (var layer in m.modules().OfType<LoraLinear>())
            {
                layer.LoraB.fill_(0.05);
            }
        }

        int converted = FrozenBaseWeights.Convert(model, DType.BF16);

        // 2 layers × 7 projection weights + 2 layers × q/k/v biases + the embedding, and lm_head when TorchSharp holds the tie as two objects.
        Assert.IsTrue(converted is 21 or 22, $"{converted} parameters converted");
        Assert.AreEqual(ScalarType.BFloat16, ((Linear)model.LmHead).weight!.dtype);
        foreach (var (name, p) in model.named_parameters())
        {
            var expected = p.requires_grad || name.Contains("norm", StringComparison.Ordinal) ? ScalarType.Float32 : ScalarType.BFloat16;
            Assert.AreEqual(expected, p.dtype, name);
        }

        model.eval();
        reference.eval();
        using var scope = NewDisposeScope();
        var ids = tensor(Tokens, [2, 6]);
        var logits = model.forward(ids, null);
        var fp32 = reference.forward(ids, null);
        Assert.AreEqual(ScalarType.Float32, logits.dtype);
        double diff = (logits - fp32).abs().max().item<float>() / fp32.abs().max().item<float>();
        Assert.IsGreaterThan(0.0, diff, "bf16 rounding must show");
        // 8 significant bits: one rounding is 2⁻⁹ ≈ 0.2 %; a handful compound through 2 layers.
        Assert.IsLessThan(0.02, diff);
    }

    [TestMethod]
    public void Convert_WithDora_OrToFp32_IsRefused()
    {
        using var model = LlamaForCausalLM.CreateRandom(TinyConfigs.Llama(), seed: 2);
        LoraInjection.Apply(model, new PeftAdapterConfig { TargetModules = TargetModules.FromList("q_proj"), R = 2, UseDora = true });
        StringAssert.Contains(BadInput.Throws(() => FrozenBaseWeights.Convert(model, DType.BF16)).Message, "DoRA");
        StringAssert.Contains(BadInput.Throws(() => FrozenBaseWeights.Convert(model, DType.F32)).Message, "BF16 or F16");
    }
}
