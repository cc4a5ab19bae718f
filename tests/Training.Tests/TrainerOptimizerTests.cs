using OnnxLora.Models;
using OnnxLora.Training.TrainerInternals;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace OnnxLora.Training.Tests;

[TestClass]
public sealed class TrainerOptimizerTests
{
    [TestMethod]
    public void Options_Defaults_AreThoseOfPyTorchAdamWAndPeft()
    {
        var o = new TrainerOptions();
        Assert.AreEqual(0.01, o.WeightDecay);
        Assert.AreEqual(8, o.Lora.R);
        Assert.AreEqual(16.0, o.Lora.Alpha);
        Assert.AreEqual(0.0, o.Lora.LoraDropout);
        Assert.IsNull(o.Lora.TargetModules, "null picks the family's PEFT default targets");
        Assert.AreEqual(1.0, o.MaxGradNorm);
        Assert.AreEqual("cpu", o.Device);
        Assert.AreEqual(0.9, TrainerOptimizer.Beta1);
        Assert.AreEqual(0.999, TrainerOptimizer.Beta2);
        Assert.AreEqual(1e-8, TrainerOptimizer.Epsilon);
    }

    [TestMethod]
    public void AdamW_TwoSteps_MatchAnIndependentDoublePrecisionAdamWWithDecay001()
    {
        double[] p0 = [1.0, -2.0, 0.5, 3.0];
        double[][] grads = [[0.3, -0.1, 2.0, 0.0], [-0.2, 0.4, 1.0, 0.5]];
        const double lr = 0.1;
        var options = new TrainerOptions { LearningRate = lr };

        using var scope = NewDisposeScope();
        var p = new Parameter(tensor(p0.Select(v => (float)v).ToArray()), requires_grad: true);
        using var optimizer = TrainerOptimizer.Create([p], options);
        foreach (var g in grads)
        {
            optimizer.zero_grad();
            using (no_grad())
            {
                p.grad = tensor(g.Select(v => (float)v).ToArray());
            }
            optimizer.step();
        }
        float[] actual = p.data<float>().ToArray();

        // Reference: decoupled weight decay, bias-corrected moments (Loshchilov & Hutter), PyTorch's defaults.
        double b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0.01;
        for (int i = 0; i < p0.Length; i++)
        {
            double x = p0[i], m = 0, v = 0;
            for (int t = 1; t <= grads.Length; t++)
            {
                double g = grads[t - 1][i];
                x *= 1 - lr * wd;
                m = b1 * m + (1 - b1) * g;
                v = b2 * v + (1 - b2) * g * g;
                double mHat = m / (1 - Math.Pow(b1, t));
                double vHat = v / (1 - Math.Pow(b2, t));
                x -= lr * mHat / (Math.Sqrt(vHat) + eps);
            }
            Assert.AreEqual(x, actual[i], 1e-6, $"element {i}");
        }
        // Element 3 has a zero first gradient: only the decay moved it in step 1, so a run without decay would differ.
        Assert.AreNotEqual(3.0f, actual[3]);
    }

    [TestMethod]
    public void Schedule_AtChosenSteps_MatchesWarmupThenHalfCosine()
    {
        const int warmup = 10, total = 100;
        foreach (int s in new[] { 0, 1, 5, 9, 10, 11, 32, 55, 77, 99 })
        {
            double expected = s < warmup
                ? s / 10.0
                : (1 + Math.Cos(Math.PI * (s - 10) / 90.0)) / 2;
            Assert.AreEqual(expected, LearningRateSchedule.Factor(s, warmup, total), 1e-12, $"step {s}");
        }
        Assert.AreEqual(0.5, LearningRateSchedule.Factor(55, warmup, total), 1e-12);
        Assert.AreEqual(1.0, LearningRateSchedule.Factor(0, 0, 5), 1e-12);
        Assert.AreEqual((1 + Math.Cos(Math.PI * 0.8)) / 2, LearningRateSchedule.Factor(4, 0, 5), 1e-12);
    }

    [TestMethod]
    public void StepPlan_CoversEachExampleOncePerEpochInSeededOrder()
    {
        var options = new TrainerOptions { BatchSize = 3, GradientAccumulation = 2, Epochs = 2, Seed = 5 };
        var plan = new StepPlan(10, options);
        Assert.AreEqual(4, plan.MicroPerEpoch);
        Assert.AreEqual(4, plan.TotalSteps);
        var epoch0 = Enumerable.Range(0, 2).SelectMany(plan.MicroBatches).SelectMany(b => b).ToList();
        var epoch1 = Enumerable.Range(2, 2).SelectMany(plan.MicroBatches).SelectMany(b => b).ToList();
        CollectionAssert.AreEquivalent(Enumerable.Range(0, 10).ToList(), epoch0);
        CollectionAssert.AreEquivalent(Enumerable.Range(0, 10).ToList(), epoch1);
        CollectionAssert.AreNotEqual(epoch0, epoch1);
        Assert.HasCount(2, plan.MicroBatches(0));
        Assert.HasCount(1, plan.MicroBatches(1)[1]);

        var again = new StepPlan(10, options);
        CollectionAssert.AreEqual(plan.MicroBatches(3)[0], again.MicroBatches(3)[0]);
    }

    [TestMethod]
    [DataRow("Lora.R")]
    [DataRow(nameof(TrainerOptions.LearningRate))]
    [DataRow(nameof(TrainerOptions.EvalFraction))]
    [DataRow(nameof(TrainerOptions.Device))]
    [DataRow(nameof(TrainerOptions.CheckpointDirectory))]
    [DataRow(nameof(TrainerOptions.GradientCheckpointingLayers))]
    [DataRow(nameof(TrainerOptions.GradientCheckpointingLayers) + " without checkpointing")]
    [DataRow(nameof(TrainerOptions.GradientCheckpointingGranularity) + " without checkpointing")]
    [DataRow(nameof(TrainerOptions.GradientCheckpointingGranularity) + " undefined")]
    public void Validate_BadOption_IsBadInputNamingIt(string name)
    {
        var o = name switch
        {
            "Lora.R" => new TrainerOptions { Lora = new() { R = 0 } },
            nameof(TrainerOptions.LearningRate) => new TrainerOptions { LearningRate = double.NaN },
            nameof(TrainerOptions.EvalFraction) => new TrainerOptions { EvalFraction = 1 },
            nameof(TrainerOptions.Device) => new TrainerOptions { Device = "cuda" },
            nameof(TrainerOptions.GradientCheckpointingLayers) => new TrainerOptions { GradientCheckpointing = true, GradientCheckpointingLayers = 0 },
            nameof(TrainerOptions.GradientCheckpointingLayers) + " without checkpointing" => new TrainerOptions { GradientCheckpointingLayers = 4 },
            nameof(TrainerOptions.GradientCheckpointingGranularity) + " without checkpointing" => new TrainerOptions { GradientCheckpointingGranularity = GradientCheckpointingGranularity.Selective },
            nameof(TrainerOptions.GradientCheckpointingGranularity) + " undefined" => new TrainerOptions { GradientCheckpointing = true, GradientCheckpointingGranularity = (GradientCheckpointingGranularity)7 },
            _ => new TrainerOptions { CheckpointEverySteps = 5 },
        };
        var e = BadInput.Throws(o.Validate);
        StringAssert.Contains(e.Message, "TrainerOptions." + name.Split(' ')[0]);
    }

    /// <summary>
    /// <see cref="ScopedAdamW"/> against TorchSharp's AdamW (bit for bit: the same operations in the same order) and against a
    /// plain fp64 AdamW written out here (PyTorch's documented update), over four steps with weight decay, two parameters of
    /// different shapes and one parameter without a gradient (skipped, as PyTorch does).
    /// </summary>
    [TestMethod]
    public void ScopedAdamW_MatchesTorchSharpsAdamWBitForBit_AndAnFp64Reference()
    {
        const double Lr = 0.05, Beta1 = 0.9, Beta2 = 0.999, Eps = 1e-8, Decay = 0.1;
        const int Steps = 4;
        using var generator = new Generator(3);
        long[][] shapes = [[3, 5], [7], [2]];
        var initial = shapes.Select(s => randn(s, generator: generator)).ToArray();
        var grads = Enumerable.Range(0, Steps).Select(_ => shapes.Take(2).Select(s => randn(s, generator: generator)).ToArray()).ToArray();

        Parameter[] Run(Func<Parameter[], AdamW> create)
        {
            var parameters = initial.Select(t => new Parameter(t.clone())).ToArray();
            using var optimizer = create(parameters);
            for (int step = 0; step < Steps; step++)
            {
                for (int i = 0; i < 2; i++)
                {
                    parameters[i].grad = grads[step][i].clone();
                }
                optimizer.step();
            }
            return parameters;
        }

        var scoped = Run(p => new ScopedAdamW(p, Lr, Beta1, Beta2, Eps, Decay));
        var torchSharps = Run(p => new AdamW(p, Lr, Beta1, Beta2, Eps, Decay));
        for (int i = 0; i < shapes.Length; i++)
        {
            CollectionAssert.AreEqual(torchSharps[i].data<float>().ToArray(), scoped[i].data<float>().ToArray(), $"parameter {i}");
        }

        // fp64 reference: p ← p(1 − lr·λ); m ← β₁m + (1 − β₁)g; v ← β₂v + (1 − β₂)g²; p ← p − lr/(1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε).
        for (int i = 0; i < 2; i++)
        {
            double[] p = [.. initial[i].data<float>().ToArray().Select(x => (double)x)];
            double[] m = new double[p.Length], v = new double[p.Length];
            for (int step = 1; step <= Steps; step++)
            {
                float[] g = grads[step - 1][i].data<float>().ToArray();
                for (int k = 0; k < p.Length; k++)
                {
                    p[k] *= 1 - (Lr * Decay);
                    m[k] = (Beta1 * m[k]) + ((1 - Beta1) * g[k]);
                    v[k] = (Beta2 * v[k]) + ((1 - Beta2) * g[k] * g[k]);
                    p[k] -= Lr / (1 - Math.Pow(Beta1, step)) * m[k] / ((Math.Sqrt(v[k]) / Math.Sqrt(1 - Math.Pow(Beta2, step))) + Eps);
                }
            }
            float[] actual = scoped[i].data<float>().ToArray();
            for (int k = 0; k < p.Length; k++)
            {
                Assert.AreEqual(p[k], actual[k], 1e-5 * Math.Max(1, Math.Abs(p[k])), $"parameter {i}[{k}]");
            }
        }
        CollectionAssert.AreEqual(initial[2].data<float>().ToArray(), scoped[2].data<float>().ToArray(), "the parameter without a gradient");
    }
}
