using OnnxLora.Core;
using OnnxLora.Core.Peft;
using OnnxLora.Models;
using OnnxLora.Training.TrainerInternals;
using static TorchSharp.torch;

namespace OnnxLora.Training.Tests;

/// <summary>The memory options: they change where memory goes, not what is learned (or, for bf16, only within rounding).</summary>
public sealed partial class TrainerTests
{
    /// <summary>The largest |a − b| over all adapter tensors, relative to the largest |a| of that tensor.</summary>
    private static double MaxRelativeAdapterDifference(Dictionary<string, float[]> a, Dictionary<string, float[]> b)
    {
        double worst = 0;
        foreach (var (key, values) in a)
        {
            double scale = values.Max(v => Math.Abs((double)v));
            double diff = values.Zip(b[key], (x, y) => Math.Abs((double)x - y)).Max();
            worst = Math.Max(worst, diff / Math.Max(scale, 1e-30));
        }
        return worst;
    }

    [TestMethod]
    [DoNotParallelize]
    public void Train_WithGradientCheckpointing_FullAndSelective_MatchesThePlainRun_LlamaAndBert()
    {
        using var dir = new TrainerTempDir();
        var cases = new[]
        {
            (Model: TrainerFixtures.Llama(dir.File("llama")), Data: TrainerFixtures.CountingData(dir.File("lm.jsonl")),
                Options: Quick with { Lora = Quick.Lora with { LoraDropout = 0.2 }, Steps = 5 }),
            (Model: TrainerFixtures.Bert(dir.File("bert")), Data: TrainerFixtures.ClassificationData(dir.File("cls.jsonl")),
                Options: Quick with { Lora = new PeftAdapterConfig { R = 4, Alpha = 8, LoraDropout = 0.2 }, Steps = 5 }),
        };
        foreach (var (model, data, options) in cases)
        {
            string name = Path.GetFileName(model);
            var plain = Trainer.Train(model, data, dir.File(name + "-plain"), options);
            foreach (var granularity in new[] { GradientCheckpointingGranularity.Full, GradientCheckpointingGranularity.Selective })
            {
                string run = $"{name}-{granularity}";
                var checkpointed = Trainer.Train(model, data, dir.File(run), options with { GradientCheckpointing = true, GradientCheckpointingGranularity = granularity });

                Assert.HasCount(plain.LossHistory.Count, checkpointed.LossHistory);
                for (int i = 0; i < plain.LossHistory.Count; i++)
                {
                    Assert.AreEqual(plain.LossHistory[i], checkpointed.LossHistory[i], 1e-6 * Math.Abs(plain.LossHistory[i]), $"{run} loss at step {i + 1}");
                }
                Assert.IsLessThanOrEqualTo(1e-6, MaxRelativeAdapterDifference(ReadAdapter(dir.File(name + "-plain")), ReadAdapter(dir.File(run))), run);
            }
        }
    }

    [TestMethod]
    [DoNotParallelize]
    public void Train_WithBf16Base_FollowsTheFp32LossCurve_StoresTheBaseInBf16_AndSavesAnFp32Adapter()
    {
        using var dir = new TrainerTempDir();
        string model = TrainerFixtures.Llama(dir.File("model"));
        string data = TrainerFixtures.CountingData(dir.File("data.jsonl"));
        var options = Quick with { Lora = Quick.Lora with { LoraDropout = 0.1 }, Steps = 12 };
        var dtypes = new Dictionary<string, ScalarType>();
        var hooks = new TrainerHooks(Started: (m, _) =>
        {
            foreach (var (name, p) in m.Root.named_parameters())
            {
                dtypes[name] = p.dtype;
            }
        });

        var fp32 = Trainer.Train(model, data, dir.File("fp32"), options);
        var bf16 = Trainer.Train(model, data, dir.File("bf16"), options with { BaseDType = DType.BF16 }, null, default, hooks);

        // In memory: every frozen projection and embedding in bf16; LoRA factors and norms in fp32.
        Assert.AreEqual(ScalarType.BFloat16, dtypes["model.layers.0.self_attn.q_proj.base_layer.weight"]);
        Assert.AreEqual(ScalarType.BFloat16, dtypes["model.layers.1.mlp.down_proj.weight"]);
        Assert.AreEqual(ScalarType.BFloat16, dtypes["model.embed_tokens.weight"]);
        Assert.AreEqual(ScalarType.BFloat16, dtypes["lm_head.weight"]);
        Assert.AreEqual(ScalarType.Float32, dtypes["model.layers.0.self_attn.q_proj.lora_A.weight"]);
        Assert.AreEqual(ScalarType.Float32, dtypes["model.layers.0.self_attn.q_proj.lora_B.weight"]);
        Assert.AreEqual(ScalarType.Float32, dtypes["model.norm.weight"]);

        // On disk: the adapter is fp32 PEFT, as from an fp32 run.
        using (var adapter = PeftAdapter.Load(dir.File("bf16")))
        {
            Assert.IsTrue(adapter.Weights.Tensors.All(t => t.DType == DType.F32));
            Assert.AreEqual(ReadAdapter(dir.File("fp32")).Count, adapter.Weights.Tensors.Count);
        }

        double worst = fp32.LossHistory.Zip(bf16.LossHistory, (a, b) => Math.Abs(a - b) / a).Max();
        Console.WriteLine($"bf16 vs fp32 loss: worst relative difference {worst:E3}; fp32 {string.Join(" ", fp32.LossHistory.Select(l => l.ToString("F4")))}; bf16 {string.Join(" ", bf16.LossHistory.Select(l => l.ToString("F4")))}");
        Assert.IsGreaterThan(0.0, worst, "a bf16 base must change the rounding, so the losses cannot be bit-equal");
        // bf16 keeps 8 significant bits: each rounding (of a weight, of a cast activation) is within 2⁻⁹ ≈ 0.2 %, and a
        // few compound through the layers and steps (measured: 0.35 % worst over 12 steps). 2 % leaves room for other
        // machines while a run that learned differently (the loss falls from 5.1 to 2.3 here) would be far outside it.
        Assert.IsLessThanOrEqualTo(0.02, worst);
    }
}
