using OnnxLora.Core;
using OnnxLora.Core.Peft;
using OnnxLora.Core.Safetensors;
using static OnnxLora.Merge.Tests.TestData;

namespace OnnxLora.Merge.Tests;

[TestClass]
public sealed class CombinationTests
{
    private const string M = "model.layers.0.mlp.up_proj";
    private const int InF = 12, OutF = 10;
    private const double Tol = 1e-6;

    private static Dictionary<string, TensorSpec> Target() => new() { [M + ".weight"] = new TensorSpec(M + ".weight", DType.F32, [OutF, InF]) };

    private static double[] Delta(float[] a, float[] b, int r, double s) => Scaled(Product(b, a, OutF, r, InF), s);

    [TestMethod]
    public void Linear_TwoAdapters_EqualsMergingOneAfterAnother()
    {
        var (x, ax, bx) = Lora(M, 2, InF, OutF, alpha: 4, seed: 1);
        var (y, ay, by) = Lora(M, 3, InF, OutF, alpha: 3, seed: 2, rslora: true);
        using var _ = x;
        using var __ = y;
        var w = Random(OutF * InF, 3);

        var plan = MergePlan.Create([new(x, 0.7), new(y, -1.3)], Target(), "mem");
        var combined = (float[])w.Clone();
        plan.ApplyTo(M + ".weight", combined);

        var sequential = (float[])w.Clone();
        x.ReadUpdate(x.Get(M)).MergeInto(sequential, 0.7);
        y.ReadUpdate(y.Get(M)).MergeInto(sequential, -1.3);

        var expected = Add(Add(w, Scaled(Delta(ax, bx, 2, 2.0), 0.7)), Scaled(Delta(ay, by, 3, 3 / Math.Sqrt(3)), -1.3));
        double scale = MaxAbs(expected);
        AssertClose(expected, combined, Tol, "linear", scale);
        AssertClose(expected, sequential, Tol, "sequential", scale);
        AssertClose(combined.Select(v => (double)v).ToArray(), sequential, Tol, "linear vs sequential", scale);
    }

    [TestMethod]
    public void Cat_NewAdapter_ReproducesWeightedSumExactly()
    {
        var (x, ax, bx) = Lora(M, 2, InF, OutF, alpha: 4, seed: 1);
        var (y, ay, by) = Lora(M, 3, InF, OutF, alpha: 3, seed: 2, rslora: true);
        using var _ = x;
        using var __ = y;
        string outDir = Path.Combine(NewDir(), "cat");
        var config = AdapterCombiner.Combine([new(x, 0.5), new(y, 2.0)], outDir, new MergeOptions { Combination = Combination.Cat });
        Assert.AreEqual(5, config.R);

        using var cat = PeftAdapter.Load(outDir);
        var m = cat.Get(M);
        Assert.AreEqual(5, m.Rank);
        Assert.AreEqual(1.0, m.Scaling, 1e-12);
        var expected = Add(Scaled(Delta(ax, bx, 2, 2.0), 0.5), Scaled(Delta(ay, by, 3, Math.Sqrt(3)), 2.0));
        AssertClose(expected, cat.ReadUpdate(M).Delta(), Tol, "cat ΔW", MaxAbs(expected));
    }

    [TestMethod]
    public void Cat_DifferentModules_KeepsPerModuleRanksInRankPattern()
    {
        const string other = "model.layers.1.mlp.up_proj";
        var (x, _, _) = Lora(M, 2, InF, OutF, alpha: 2, seed: 1);
        var (y, ay, by) = Lora(other, 3, InF, OutF, alpha: 6, seed: 2);
        using var _1 = x;
        using var _2 = y;
        string outDir = Path.Combine(NewDir(), "cat2");
        AdapterCombiner.Combine([new(x), new(y)], outDir, new MergeOptions { Combination = Combination.Linear });
        using var cat = PeftAdapter.Load(outDir);
        Assert.AreEqual(2, cat.Get(M).Rank);
        Assert.AreEqual(3, cat.Get(other).Rank);
        Assert.AreEqual(1.0, cat.Get(other).Scaling, 1e-12);
        AssertClose(Scaled(Product(by, ay, OutF, 3, InF), 2.0), cat.ReadUpdate(other).Delta(), Tol, "other");
    }

    [TestMethod]
    public void Svd_NewAdapter_ErrorShrinksWithRankAndVanishesAtFullRank()
    {
        var (x, ax, bx) = Lora(M, 4, InF, OutF, alpha: 4, seed: 1);
        var (y, ay, by) = Lora(M, 4, InF, OutF, alpha: 8, seed: 2);
        using var _ = x;
        using var __ = y;
        var expected = Add(Scaled(Delta(ax, bx, 4, 1.0), 1.0), Scaled(Delta(ay, by, 4, 2.0), 0.5));
        double previous = double.PositiveInfinity;
        foreach (int rank in new[] { 1, 2, 4, 6, 8 })
        {
            string outDir = Path.Combine(NewDir(), $"svd{rank}");
            AdapterCombiner.Combine([new(x, 1.0), new(y, 0.5)], outDir, new MergeOptions { Combination = Combination.Svd, SvdRank = rank });
            using var svd = PeftAdapter.Load(outDir);
            Assert.AreEqual(rank, svd.Get(M).Rank);
            var got = svd.ReadUpdate(M).Delta();
            double err = Math.Sqrt(expected.Select((e, i) => (e - got[i]) * (e - got[i])).Sum());
            Assert.IsLessThan(previous, err + 1e-12, $"rank {rank}: error {err} did not shrink from {previous}");
            previous = err;
        }
        // The sum has rank ≤ 8, so rank 8 reproduces it up to fp32 rounding.
        Assert.IsLessThan(1e-5 * Math.Sqrt(expected.Sum(e => e * e)), previous);
    }

    [TestMethod]
    public void Svd_IntoWeights_AtFullRankEqualsLinear()
    {
        var (x, ax, bx) = Lora(M, 2, InF, OutF, alpha: 4, seed: 1);
        var (y, ay, by) = Lora(M, 2, InF, OutF, alpha: 4, seed: 2);
        using var _ = x;
        using var __ = y;
        var w = Random(OutF * InF, 3);
        var plan = MergePlan.Create([new(x), new(y)], Target(), "mem", new MergeOptions { Combination = Combination.Svd, SvdRank = 4 });
        var merged = (float[])w.Clone();
        plan.ApplyTo(M + ".weight", merged);
        var expected = Add(Add(w, Delta(ax, bx, 2, 2.0)), Delta(ay, by, 2, 2.0));
        AssertClose(expected, merged, 1e-5, "svd full rank", MaxAbs(expected));
    }

    [TestMethod]
    public void Ties_IntoWeights_MatchesReferenceDefinition()
    {
        var (x, ax, bx) = Lora(M, 2, InF, OutF, alpha: 4, seed: 1);
        var (y, ay, by) = Lora(M, 2, InF, OutF, alpha: 2, seed: 2);
        var (z, az, bz) = Lora(M, 1, InF, OutF, alpha: 3, seed: 3);
        using var _1 = x;
        using var _2 = y;
        using var _3 = z;
        var tasks = new[] { Delta(ax, bx, 2, 2.0), Delta(ay, by, 2, 1.0), Delta(az, bz, 1, 3.0) };
        var weights = new[] { 1.0, 0.6, -0.8 };
        foreach (var signMethod in new[] { MajoritySignMethod.Total, MajoritySignMethod.Frequency })
        {
            var w = Random(OutF * InF, 4);
            var plan = MergePlan.Create([new(x, 1.0), new(y, 0.6), new(z, -0.8)], Target(), "mem",
                new MergeOptions { Combination = Combination.Ties, Density = 0.4, MajoritySign = signMethod });
            var merged = (float[])w.Clone();
            plan.ApplyTo(M + ".weight", merged);
            var expected = Add(w, ReferenceTies(tasks, weights, 0.4, signMethod == MajoritySignMethod.Total));
            AssertClose(expected, merged, Tol, $"ties ({signMethod})", MaxAbs(expected));
        }
    }

    [TestMethod]
    public void MagnitudePrune_IntoWeights_KeepsTopDensityOfEachTask()
    {
        var (x, ax, bx) = Lora(M, 2, InF, OutF, alpha: 4, seed: 1);
        var (y, ay, by) = Lora(M, 2, InF, OutF, alpha: 2, seed: 2);
        using var _1 = x;
        using var _2 = y;
        var tasks = new[] { Delta(ax, bx, 2, 2.0), Delta(ay, by, 2, 1.0) };
        var w = Random(OutF * InF, 4);
        var plan = MergePlan.Create([new(x, 0.5), new(y, 1.5)], Target(), "mem", new MergeOptions { Combination = Combination.MagnitudePrune, Density = 0.25 });
        var merged = (float[])w.Clone();
        plan.ApplyTo(M + ".weight", merged);
        var p0 = ReferenceMagnitudePrune(tasks[0], 0.25);
        var p1 = ReferenceMagnitudePrune(tasks[1], 0.25);
        var expected = w.Select((v, i) => v + 0.5 * p0[i] + 1.5 * p1[i]).ToArray();
        AssertClose(expected, merged, Tol, "magnitude_prune", MaxAbs(expected));
    }

    [TestMethod]
    public void DareLinear_KeepsAboutDensityRescaled_AndIsSeeded()
    {
        const int inF = 64, outF = 48;
        var (x, ax, bx) = Lora(M, 4, inF, outF, alpha: 4, seed: 1);
        using var _ = x;
        var target = new Dictionary<string, TensorSpec> { [M + ".weight"] = new TensorSpec(M + ".weight", DType.F32, [outF, inF]) };
        var task = Scaled(Product(bx, ax, outF, 4, inF), 1.0);
        float[] Run(int seed)
        {
            var plan = MergePlan.Create([new(x, 2.0)], target, "mem", new MergeOptions { Combination = Combination.DareLinear, Density = 0.3, Seed = seed });
            var d = new float[outF * inF];
            plan.ApplyTo(M + ".weight", d);
            return d;
        }
        var first = Run(7);
        int kept = 0;
        for (int i = 0; i < first.Length; i++)
        {
            if (first[i] != 0)
            {
                kept++;
                Assert.AreEqual(2.0 * task[i] / 0.3, first[i], 1e-6 * Math.Abs(2.0 * task[i] / 0.3), $"kept element {i} is rescaled by 1/density");
            }
        }
        double fraction = kept / (double)first.Length;
        Assert.IsTrue(fraction is > 0.25 and < 0.35, $"kept fraction {fraction}");
        CollectionAssert.AreEqual(first, Run(7), "same seed, same mask");
        CollectionAssert.AreNotEqual(first, Run(8), "another seed, another mask");
    }

    [TestMethod]
    public void DareTies_WithDensityOne_IsTiesWithoutPruning()
    {
        var (x, ax, bx) = Lora(M, 2, InF, OutF, alpha: 4, seed: 1);
        var (y, ay, by) = Lora(M, 2, InF, OutF, alpha: 2, seed: 2);
        using var _1 = x;
        using var _2 = y;
        var tasks = new[] { Delta(ax, bx, 2, 2.0), Delta(ay, by, 2, 1.0) };
        var plan = MergePlan.Create([new(x, 1.0), new(y, 0.5)], Target(), "mem", new MergeOptions { Combination = Combination.DareTies, Density = 1.0 });
        var merged = new float[OutF * InF];
        plan.ApplyTo(M + ".weight", merged);
        AssertClose(ReferenceTies(tasks, [1.0, 0.5], 1.0, total: true), merged, Tol, "dare_ties density 1", 1e-3);
    }

    [TestMethod]
    public void Combine_LoHaIntoSvdAdapter_ReproducesAtFullRank()
    {
        const int r = 2;
        var w1a = Random(OutF * r, 1);
        var w1b = Random(r * InF, 2);
        var w2a = Random(OutF * r, 3);
        var w2b = Random(r * InF, 4);
        using var loha = Adapter(new PeftAdapterConfig { PeftType = PeftType.LoHa, R = r, Alpha = 2 },
            (Key(M, ".hada_w1_a"), [OutF, r], w1a), (Key(M, ".hada_w1_b"), [r, InF], w1b),
            (Key(M, ".hada_w2_a"), [OutF, r], w2a), (Key(M, ".hada_w2_b"), [r, InF], w2b));
        var p1 = Product(w1a, w1b, OutF, r, InF);
        var p2 = Product(w2a, w2b, OutF, r, InF);
        var expected = p1.Select((v, i) => v * p2[i]).ToArray();
        string outDir = Path.Combine(NewDir(), "loha-svd");
        AdapterCombiner.Combine([new(loha)], outDir, new MergeOptions { Combination = Combination.Svd, SvdRank = 4 });
        using var lora = PeftAdapter.Load(outDir);
        Assert.AreEqual(PeftType.Lora, lora.Config.PeftType);
        AssertClose(expected, lora.ReadUpdate(M).Delta(), 1e-5, "LoHa as rank-4 LoRA", MaxAbs(expected));
        BadInput.Throws(() => AdapterCombiner.Combine([new(loha)], Path.Combine(NewDir(), "x"), new MergeOptions { Combination = Combination.Cat }));
    }

    // ---- references (PEFT merge_utils semantics, plain loops) ----

    private static double[] ReferenceMagnitudePrune(double[] t, double density)
    {
        if (density >= 1)
        {
            return t;
        }
        int k = (int)(density * t.Length);
        var threshold = t.Select(Math.Abs).OrderByDescending(v => v).ElementAt(Math.Max(k - 1, 0));
        return t.Select(v => k > 0 && Math.Abs(v) >= threshold ? v : 0).ToArray();
    }

    private static double[] ReferenceTies(double[][] tasks, double[] weights, double density, bool total)
    {
        var pruned = tasks.Select(t => ReferenceMagnitudePrune(t, density)).ToArray();
        int n = tasks[0].Length;
        var result = new double[n];
        for (int e = 0; e < n; e++)
        {
            double s = 0;
            foreach (var p in pruned)
            {
                s += total ? p[e] : Math.Sign(p[e]);
            }
            int majority = s >= 0 ? 1 : -1;
            double sum = 0;
            int count = 0;
            for (int i = 0; i < pruned.Length; i++)
            {
                if (Math.Sign(pruned[i][e]) == majority)
                {
                    sum += weights[i] * pruned[i][e];
                    count++;
                }
            }
            result[e] = sum / Math.Max(count, 1);
        }
        return result;
    }
}
