using OnnxLora.Core.Peft;

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
    public void Train_WithGradientCheckpointing_MatchesThePlainRun_LlamaAndBert()
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
            var checkpointed = Trainer.Train(model, data, dir.File(name + "-ckpt"), options with { GradientCheckpointing = true });

            Assert.HasCount(plain.LossHistory.Count, checkpointed.LossHistory);
            for (int i = 0; i < plain.LossHistory.Count; i++)
            {
                Assert.AreEqual(plain.LossHistory[i], checkpointed.LossHistory[i], 1e-6 * Math.Abs(plain.LossHistory[i]), $"{name} loss at step {i + 1}");
            }
            Assert.IsLessThanOrEqualTo(1e-6, MaxRelativeAdapterDifference(ReadAdapter(dir.File(name + "-plain")), ReadAdapter(dir.File(name + "-ckpt"))), name);
        }
    }
}
