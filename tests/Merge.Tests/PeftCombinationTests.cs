using OnnxLora.Core;
using OnnxLora.Core.Peft;
using OnnxLora.Core.Safetensors;
using static OnnxLora.Merge.Tests.TestData;
using Ref = OnnxLora.Merge.Tests.PeftReference;

namespace OnnxLora.Merge.Tests;

/// <summary>
/// Every combination name against the fp64 PEFT-semantics reference (<see cref="PeftReference"/>), merged
/// into weights and written as a new adapter, with both fan_in_fan_out layouts and an embedding.
/// </summary>
[TestClass]
public sealed class PeftCombinationTests
{
    private const string M = "model.layers.0.mlp.up_proj";
    private const string E = "model.embed_tokens";
    private const int InF = 12, OutF = 10, Num = 14, Dim = 6, R = 3;
    private const double Tol = 1e-6;

    /// <summary>Three rank-3 adapters (scalings 2, √3 with rsLoRA, 4/3), the third without the embedding.</summary>
    private sealed class Fixture : IDisposable
    {
        public Fixture(bool fanInFanOut)
        {
            FanInFanOut = fanInFanOut;
            var both = new List<(string, int, int, bool)> { (M, InF, OutF, false), (E, Num, Dim, true) };
            (X, XF) = MultiLora(R, 6, 1, both, fanInFanOut: fanInFanOut);
            (Y, YF) = MultiLora(R, 3, 100, both, rslora: true, fanInFanOut: fanInFanOut);
            (Z, ZF) = MultiLora(R, 4, 200, [(M, InF, OutF, false)], fanInFanOut: fanInFanOut);
        }

        public bool FanInFanOut { get; }

        public PeftAdapter X { get; }

        public PeftAdapter Y { get; }

        public PeftAdapter Z { get; }

        public Dictionary<string, (float[] A, float[] B)> XF { get; }

        public Dictionary<string, (float[] A, float[] B)> YF { get; }

        public Dictionary<string, (float[] A, float[] B)> ZF { get; }

        public static readonly double[] Weights = [0.7, -1.3, 0.4];

        public static readonly double[] Scalings = [2.0, Math.Sqrt(3), 4.0 / 3];

        public List<WeightedAdapter> Adapters => [new(X, Weights[0]), new(Y, Weights[1]), new(Z, Weights[2])];

        public Dictionary<string, TensorSpec> Target() => new()
        {
            [M + ".weight"] = new TensorSpec(M + ".weight", DType.F32, FanInFanOut ? [InF, OutF] : [OutF, InF]),
            [E + ".weight"] = new TensorSpec(E + ".weight", DType.F32, [Num, Dim]),
        };

        /// <summary>The reference loras of a module, adapter by adapter (only those that have it).</summary>
        public List<Ref.Lora> Loras(string module)
        {
            var all = new[] { XF, YF, ZF };
            var list = new List<Ref.Lora>();
            for (int i = 0; i < 3; i++)
            {
                if (all[i].TryGetValue(module, out var f))
                {
                    var (inF, outF) = module == M ? (InF, OutF) : (Num, Dim);
                    list.Add(Ref.Of(f.A, f.B, R, inF, outF, Scalings[i], Weights[i]));
                }
            }
            return list;
        }

        public void Dispose()
        {
            X.Dispose();
            Y.Dispose();
            Z.Dispose();
        }
    }

    private static MergeOptions Options(string name, double density, bool total) => new()
    {
        Combination = CombinationNames.TryParse(name, out var c) ? c : throw new ArgumentException(name),
        Density = density,
        MajoritySignMethod = total ? MajoritySignMethod.Total : MajoritySignMethod.Frequency,
        Seed = 3,
    };

    private static double DensityFor(string name) => name.StartsWith("dare", StringComparison.Ordinal) ? 1.0 : name.Contains("prune", StringComparison.Ordinal) || name.StartsWith("ties", StringComparison.Ordinal) ? 0.4 : 1.0;

    [TestMethod]
    [DataRow("delta_sum", false)]
    [DataRow("linear", false)]
    [DataRow("cat", false)]
    [DataRow("svd", false)]
    [DataRow("ties", false)]
    [DataRow("ties_svd", false)]
    [DataRow("dare_linear", false)]
    [DataRow("dare_ties", false)]
    [DataRow("dare_linear_svd", false)]
    [DataRow("dare_ties_svd", false)]
    [DataRow("magnitude_prune", false)]
    [DataRow("magnitude_prune_svd", false)]
    [DataRow("delta_sum", true)]
    [DataRow("linear", true)]
    [DataRow("cat", true)]
    [DataRow("svd", true)]
    [DataRow("ties", true)]
    [DataRow("ties_svd", true)]
    [DataRow("dare_linear", true)]
    [DataRow("dare_ties", true)]
    [DataRow("dare_linear_svd", true)]
    [DataRow("dare_ties_svd", true)]
    [DataRow("magnitude_prune", true)]
    [DataRow("magnitude_prune_svd", true)]
    public void Combination_IntoWeights_EqualsPeftAddWeightedAdapterThenMerge(string name, bool fanInFanOut)
    {
        using var f = new Fixture(fanInFanOut);
        double density = DensityFor(name);
        foreach (bool total in new[] { true, false })
        {
            var plan = MergePlan.Create(f.Adapters, f.Target(), "mem", Options(name, density, total));
            Assert.IsEmpty(plan.Warnings.Where(w => !w.Contains("prunes nothing", StringComparison.Ordinal)).ToList(), string.Join("\n", plan.Warnings));

            var w = Random(OutF * InF, 50);
            var merged = (float[])w.Clone();
            plan.ApplyTo(M + ".weight", merged);
            var delta = Ref.CombinedDelta(name, f.Loras(M), density, total, R);
            var expected = Add(w, fanInFanOut ? Transposed(delta, OutF, InF) : delta);
            AssertClose(expected, merged, Tol, $"{name} linear module (sign {(total ? "total" : "frequency")})", MaxAbs(expected));

            var we = Random(Num * Dim, 51);
            var mergedE = (float[])we.Clone();
            plan.ApplyTo(E + ".weight", mergedE);
            var expectedE = Add(we, Transposed(Ref.CombinedDelta(name, f.Loras(E), density, total, R), Dim, Num));
            AssertClose(expectedE, mergedE, Tol, $"{name} embedding", MaxAbs(expectedE));
        }
    }

    [TestMethod]
    [DataRow("delta_sum")]
    [DataRow("linear")]
    [DataRow("cat")]
    [DataRow("svd")]
    [DataRow("ties")]
    [DataRow("ties_svd")]
    [DataRow("dare_linear")]
    [DataRow("dare_ties")]
    [DataRow("dare_linear_svd")]
    [DataRow("dare_ties_svd")]
    [DataRow("magnitude_prune")]
    [DataRow("magnitude_prune_svd")]
    public void Combination_AsNewAdapter_EqualsPeftAddWeightedAdapter(string name)
    {
        foreach (bool fanInFanOut in new[] { false, true })
        {
            using var f = new Fixture(fanInFanOut);
            double density = DensityFor(name);
            string outDir = Path.Combine(NewDir(), name);
            var result = AdapterCombiner.Combine(f.Adapters, outDir, Options(name, density, total: true));
            using var combined = PeftAdapter.Load(outDir);
            Assert.AreEqual(fanInFanOut, combined.Config.FanInFanOut, "the first adapter's fan_in_fan_out is kept, as PEFT's replace(config) does");
            foreach (var (module, inF, outF) in new[] { (M, InF, OutF), (E, Num, Dim) })
            {
                var m = combined.Get(module);
                Assert.AreEqual(1.0, m.Scaling, 1e-12, "combined modules have scaling 1");
                int rank = m.Rank;
                var got = Ref.MatMul(combined.ReadSingles(m, AdapterTensorRole.LoraB).Select(v => (double)v).ToArray(),
                    combined.ReadSingles(m, AdapterTensorRole.LoraA).Select(v => (double)v).ToArray(), outF, rank, inF);
                var expected = Ref.CombinedDelta(name, f.Loras(module), density, totalSign: true, R);
                AssertClose(expected, got.Select(v => (float)v).ToArray(), Tol, $"{name} {module} ΔW' = B'·A'", MaxAbs(expected));
                int expectedRank = result.Applied is Combination.Cat ? f.Loras(module).Count * R : R;
                Assert.AreEqual(expectedRank, rank, $"{name} {module} rank");
            }
        }
    }

    // ---- values worked out by hand from PEFT's merge_utils (not from any code) ----

    /// <summary>
    /// ties_svd on three 2×2 updates (rank 2, alpha 4: s = 2, A = I, B = T/2 so ΔW = T), weights 1, 0.5, 2,
    /// density 0.75 (k = 3 of 4 kept), svd_rank 2 (no truncation):
    /// T1 = [4, −1, 0.5, 2] → [4, −1, 0, 2]; T2 = [−1, 3, −0.2, 2.5] → [−1, 3, 0, 2.5]; T3 = [−1.5, −2, 1, −0.1] → [−1.5, −2, 1, 0].
    /// total: sums 1.5, 0, 1, 4.5 → all +; agreeing weighted means 4/1, 1.5/1, 2/1, (2 + 1.25)/2.
    /// frequency: sign sums −1, −1, 1, 2 → −, −, +, +; means (−0.5 − 3)/2, (−1 − 4)/2, 2, 1.625.
    /// With PEFT's pre-#3111 double scaling every value would be twice as large.
    /// </summary>
    [TestMethod]
    [DataRow(true, new[] { 4.0, 1.5, 2.0, 1.625 })]
    [DataRow(false, new[] { -1.75, -2.5, 2.0, 1.625 })]
    public void TiesSvd_WorkedExample_MatchesHandComputedValues(bool total, double[] expected)
    {
        float[][] t = [[4, -1, 0.5f, 2], [-1, 3, -0.2f, 2.5f], [-1.5f, -2, 1, -0.1f]];
        var adapters = t.Select(v => Adapter(new PeftAdapterConfig { R = 2, Alpha = 4, TargetModules = TargetModules.FromList(["m"]) },
            (Key("m", ".lora_A.weight"), [2, 2], [1f, 0, 0, 1]), (Key("m", ".lora_B.weight"), [2, 2], v.Select(x => x / 2).ToArray()))).ToList();
        try
        {
            var target = new Dictionary<string, TensorSpec> { ["m.weight"] = new TensorSpec("m.weight", DType.F32, [2, 2]) };
            var plan = MergePlan.Create([new(adapters[0], 1.0), new(adapters[1], 0.5), new(adapters[2], 2.0)], target, "mem",
                new MergeOptions { Combination = Combination.TiesSvd, Density = 0.75, SvdRank = 2, MajoritySignMethod = total ? MajoritySignMethod.Total : MajoritySignMethod.Frequency });
            var merged = new float[4];
            plan.ApplyTo("m.weight", merged);
            AssertClose(expected, merged, Tol, $"ties_svd ({(total ? "total" : "frequency")})", 4);
        }
        finally
        {
            adapters.ForEach(a => a.Dispose());
        }
    }

    /// <summary>
    /// ties on the factors of two rank-1 adapters (alpha = r: s = 1), weights 1 and 4 (√|w·s| = 1, 2), density 0.5 (k = 1 of 2):
    /// A1 = [3, −1] → [3, 0], A2 = [−0.5, 2] → [0, 2]; both columns elect +, so A' = [3·1, 2·2] = [3, 4].
    /// B1 = [1, −2]ᵀ → [0, −2], B2 = [0.25, 1]ᵀ → [0, 1]; row 0 has no non-zero value (0); row 1: total −1 → −, B' = [0, −2·1];
    /// frequency: 0 → +, B' = [0, 1·2]. ΔW' = B'·A' = [[0, 0], [−6, −8]] (total) or [[0, 0], [6, 8]] (frequency).
    /// </summary>
    [TestMethod]
    [DataRow(true, new[] { 0.0, 0.0, -6.0, -8.0 }, new[] { 0.0, -2.0 })]
    [DataRow(false, new[] { 0.0, 0.0, 6.0, 8.0 }, new[] { 0.0, 2.0 })]
    public void Ties_FactorSpaceWorkedExample_MatchesHandComputedValues(bool total, double[] expectedDelta, double[] expectedB)
    {
        using var x = Adapter(new PeftAdapterConfig { R = 1, Alpha = 1, TargetModules = TargetModules.FromList(["m"]) },
            (Key("m", ".lora_A.weight"), [1, 2], [3f, -1f]), (Key("m", ".lora_B.weight"), [2, 1], [1f, -2f]));
        using var y = Adapter(new PeftAdapterConfig { R = 1, Alpha = 1, TargetModules = TargetModules.FromList(["m"]) },
            (Key("m", ".lora_A.weight"), [1, 2], [-0.5f, 2f]), (Key("m", ".lora_B.weight"), [2, 1], [0.25f, 1f]));
        var options = new MergeOptions { Combination = Combination.Ties, Density = 0.5, MajoritySignMethod = total ? MajoritySignMethod.Total : MajoritySignMethod.Frequency };
        var target = new Dictionary<string, TensorSpec> { ["m.weight"] = new TensorSpec("m.weight", DType.F32, [2, 2]) };
        var merged = new float[4];
        MergePlan.Create([new(x, 1.0), new(y, 4.0)], target, "mem", options).ApplyTo("m.weight", merged);
        AssertClose(expectedDelta, merged, Tol, "ties into weights", 8);

        string outDir = Path.Combine(NewDir(), "ties");
        AdapterCombiner.Combine([new(x, 1.0), new(y, 4.0)], outDir, options);
        using var combined = PeftAdapter.Load(outDir);
        AssertClose([3.0, 4.0], combined.ReadSingles(combined.Get("m"), AdapterTensorRole.LoraA), Tol, "A'", 4);
        AssertClose(expectedB, combined.ReadSingles(combined.Get("m"), AdapterTensorRole.LoraB), Tol, "B'", 2);
    }

    /// <summary>
    /// PEFT's linear combines the factors, so with weights 1 and −1, A' = A1 − A2 and B' = B1 + B2 and the
    /// product has cross terms: e₁e₁ᵀ and e₂e₂ᵀ give [[1, −1], [1, −1]], not diag(1, −1) (which delta_sum gives).
    /// </summary>
    [TestMethod]
    public void Linear_CombinesFactorsWithCrossTerms_DeltaSumDoesNot()
    {
        var cfg = new PeftAdapterConfig { R = 1, Alpha = 1, TargetModules = TargetModules.FromList(["m"]) };
        using var x = Adapter(cfg, (Key("m", ".lora_A.weight"), [1, 2], [1f, 0f]), (Key("m", ".lora_B.weight"), [2, 1], [1f, 0f]));
        using var y = Adapter(cfg, (Key("m", ".lora_A.weight"), [1, 2], [0f, 1f]), (Key("m", ".lora_B.weight"), [2, 1], [0f, 1f]));
        var target = new Dictionary<string, TensorSpec> { ["m.weight"] = new TensorSpec("m.weight", DType.F32, [2, 2]) };
        float[] Run(Combination c)
        {
            var w = new float[4];
            MergePlan.Create([new(x, 1.0), new(y, -1.0)], target, "mem", new MergeOptions { Combination = c }).ApplyTo("m.weight", w);
            return w;
        }
        CollectionAssert.AreEqual(new float[] { 1, -1, 1, -1 }, Run(Combination.Linear));
        CollectionAssert.AreEqual(new float[] { 1, 0, 0, -1 }, Run(Combination.DeltaSum));
        CollectionAssert.AreEqual(new float[] { 1, 0, 0, -1 }, Run(Combination.Cat));
    }

    // ---- PEFT's rules ----

    [TestMethod]
    public void OneAdapter_AnyPeftCombination_FallsBackToLinear()
    {
        var (x, a, b) = Lora(M, 2, InF, OutF, alpha: 4, seed: 1);
        using var _ = x;
        var target = new Dictionary<string, TensorSpec> { [M + ".weight"] = new TensorSpec(M + ".weight", DType.F32, [OutF, InF]) };
        var expected = Ref.Of(a, b, 2, InF, OutF, 2.0, -0.6).Delta().Select(v => v * -0.6).ToArray();
        foreach (var c in new[] { Combination.Ties, Combination.MagnitudePruneSvd, Combination.DareTies, Combination.Svd })
        {
            var plan = MergePlan.Create([new(x, -0.6)], target, "mem", new MergeOptions { Combination = c, Density = 0.2, SvdRank = 1 });
            Assert.AreEqual(Combination.Linear, plan.AppliedCombination, c.ToString());
            StringAssert.Contains(plan.Warnings.Single(), $"combination {c.ToName()} becomes linear");
            var merged = new float[OutF * InF];
            plan.ApplyTo(M + ".weight", merged);
            AssertClose(expected, merged, Tol, $"{c} with one adapter", MaxAbs(expected));
        }
    }

    [TestMethod]
    public void FactorSpaceCombination_DifferentRanks_IsRefusedAsPeftDoes()
    {
        var (x, _, _) = Lora(M, 2, InF, OutF, alpha: 4, seed: 1);
        var (y, _, _) = Lora(M, 3, InF, OutF, alpha: 4, seed: 2);
        using var _1 = x;
        using var _2 = y;
        var target = new Dictionary<string, TensorSpec> { [M + ".weight"] = new TensorSpec(M + ".weight", DType.F32, [OutF, InF]) };
        foreach (var c in new[] { Combination.Linear, Combination.Ties, Combination.DareLinear, Combination.DareTies, Combination.MagnitudePrune })
        {
            var e = BadInput.Throws(() => MergePlan.Create([new(x), new(y)], target, "mem", new MergeOptions { Combination = c }), c.ToString());
            StringAssert.Contains(e.Message, $"combination {c.ToName()}: adapter ranks: found 2 ({x.Directory}), 3 ({y.Directory})");
            BadInput.Throws(() => AdapterCombiner.Combine([new(x), new(y)], Path.Combine(NewDir(), "o"), new MergeOptions { Combination = c }));
        }
        // cat, svd and the *_svd forms take different ranks.
        foreach (var c in new[] { Combination.Cat, Combination.Svd, Combination.TiesSvd, Combination.DeltaSum })
        {
            Assert.AreEqual(c, MergePlan.Create([new(x), new(y)], target, "mem", new MergeOptions { Combination = c }).AppliedCombination);
        }
    }

    /// <summary>svd with one adapter at weight 0.5 (s = 2) and one at weight 0: scaling applied once (PEFT PR #3111), so ΔW' = 0.5·s·B·A.</summary>
    [TestMethod]
    public void Svd_AppliesEachScalingOnce()
    {
        var (x, a, b) = Lora(M, 2, InF, OutF, alpha: 4, seed: 1);
        var (y, _, _) = Lora(M, 2, InF, OutF, alpha: 4, seed: 2);
        using var _1 = x;
        using var _2 = y;
        string outDir = Path.Combine(NewDir(), "svd");
        AdapterCombiner.Combine([new(x, 0.5), new(y, 0.0)], outDir, new MergeOptions { Combination = Combination.Svd });
        using var svd = PeftAdapter.Load(outDir);
        var m = svd.Get(M);
        Assert.AreEqual(2, m.Rank, "svd_rank defaults to the largest adapter rank");
        var got = Ref.MatMul(svd.ReadSingles(m, AdapterTensorRole.LoraB).Select(v => (double)v).ToArray(), svd.ReadSingles(m, AdapterTensorRole.LoraA).Select(v => (double)v).ToArray(), OutF, 2, InF);
        var expected = Ref.Of(a, b, 2, InF, OutF, 2.0, 0.5).Delta().Select(v => v * 0.5).ToArray();
        AssertClose(expected, got.Select(v => (float)v).ToArray(), Tol, "0.5·ΔW", MaxAbs(expected));
    }

    [TestMethod]
    public void Svd_NewAdapter_ErrorShrinksWithRankAndVanishesAtFullRank()
    {
        var (x, ax, bx) = Lora(M, 4, InF, OutF, alpha: 4, seed: 1);
        var (y, ay, by) = Lora(M, 4, InF, OutF, alpha: 8, seed: 2);
        using var _ = x;
        using var __ = y;
        var expected = Ref.Sum([Ref.Of(ax, bx, 4, InF, OutF, 1.0, 1).Delta(), Ref.Of(ay, by, 4, InF, OutF, 2.0, 0.5).Delta().Select(v => v * 0.5).ToArray()]);
        double previous = double.PositiveInfinity;
        foreach (int rank in new[] { 1, 2, 4, 6, 8 })
        {
            string outDir = Path.Combine(NewDir(), $"svd{rank}");
            AdapterCombiner.Combine([new(x, 1.0), new(y, 0.5)], outDir, new MergeOptions { Combination = Combination.Svd, SvdRank = rank });
            using var svd = PeftAdapter.Load(outDir);
            Assert.AreEqual(rank, svd.Get(M).Rank);
            var got = svd.ReadUpdate(M).Delta();
            AssertClose(Ref.BestRankApproximation(expected, OutF, InF, rank), got, Tol, $"rank {rank}", MaxAbs(expected));
            double err = Math.Sqrt(expected.Select((e, i) => (e - got[i]) * (e - got[i])).Sum());
            Assert.IsLessThan(previous, err + 1e-12, $"rank {rank}: error {err} did not shrink from {previous}");
            previous = err;
        }
        Assert.IsLessThan(1e-5 * Math.Sqrt(expected.Sum(e => e * e)), previous, "rank 8 ≥ the sum's rank reproduces it");
    }

    [TestMethod]
    public void Combine_LoHa_SvdOnly()
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
        var result = AdapterCombiner.Combine([new(loha)], outDir, new MergeOptions { Combination = Combination.TiesSvd, Density = 0.3, SvdRank = 4 });
        Assert.AreEqual(Combination.Svd, result.Applied, "one LoHa adapter: the SVD step stays, the pruning goes");
        using var lora = PeftAdapter.Load(outDir);
        Assert.AreEqual(PeftType.Lora, lora.Config.PeftType);
        AssertClose(Ref.BestRankApproximation(expected, OutF, InF, 4), lora.ReadUpdate(M).Delta(), Tol, "LoHa as rank-4 LoRA", MaxAbs(expected));
        foreach (var c in new[] { Combination.Cat, Combination.Linear, Combination.Ties })
        {
            var e = BadInput.Throws(() => AdapterCombiner.Combine([new(loha)], Path.Combine(NewDir(), "x"), new MergeOptions { Combination = c }));
            StringAssert.Contains(e.Message, "is LoHa");
        }
    }

    // ---- DARE: random, so checked by keep rate, rescale and seed ----

    [TestMethod]
    public void DareLinear_FactorSpace_KeepsAboutDensityRescaled_AndIsSeeded()
    {
        const int inF = 64, outF = 48, r = 4;
        var (x, ax, bx) = Lora(M, r, inF, outF, alpha: 8, seed: 1);
        var (y, _, _) = Lora(M, r, inF, outF, alpha: 8, seed: 2);
        using var _1 = x;
        using var _2 = y;
        (float[] A, float[] B) Run(int seed)
        {
            string outDir = Path.Combine(NewDir(), $"dare{seed}");
            // The second adapter has weight 0, so each factor of the result is √(w·s)·mask(factor)/density of the first.
            AdapterCombiner.Combine([new(x, 2.0), new(y, 0.0)], outDir, new MergeOptions { Combination = Combination.DareLinear, Density = 0.3, Seed = seed });
            using var c = PeftAdapter.Load(outDir);
            return (c.ReadSingles(c.Get(M), AdapterTensorRole.LoraA), c.ReadSingles(c.Get(M), AdapterTensorRole.LoraB));
        }
        var (a1, b1) = Run(7);
        double root = Math.Sqrt(2.0 * 2.0);
        int kept = 0, total = 0;
        foreach (var (got, source) in new[] { (a1, ax), (b1, bx) })
        {
            for (int i = 0; i < got.Length; i++)
            {
                total++;
                if (got[i] != 0)
                {
                    kept++;
                    double want = root * source[i] / 0.3;
                    Assert.AreEqual(want, got[i], 1e-6 * Math.Abs(want), $"kept element {i} is √(w·s)·x/density");
                }
            }
        }
        double fraction = kept / (double)total;
        Assert.IsTrue(fraction is > 0.24 and < 0.36, $"kept fraction {fraction} (density 0.3)");
        var (a2, b2) = Run(7);
        CollectionAssert.AreEqual(a1, a2, "same seed, same mask (A)");
        CollectionAssert.AreEqual(b1, b2, "same seed, same mask (B)");
        CollectionAssert.AreNotEqual(a1, Run(8).A, "another seed, another mask");
    }

    [TestMethod]
    public void DareLinearSvd_DeltaSpace_KeepsAboutDensityRescaled_AndIsSeeded()
    {
        const int inF = 40, outF = 30, r = 4;
        var (x, ax, bx) = Lora(M, r, inF, outF, alpha: 8, seed: 1);
        var (y, _, _) = Lora(M, r, inF, outF, alpha: 8, seed: 2);
        using var _1 = x;
        using var _2 = y;
        var target = new Dictionary<string, TensorSpec> { [M + ".weight"] = new TensorSpec(M + ".weight", DType.F32, [outF, inF]) };
        float[] Run(int seed)
        {
            // Full svd_rank: no truncation, so W' − W = 1.5·mask(ΔW)/density of the first adapter.
            var plan = MergePlan.Create([new(x, 1.5), new(y, 0.0)], target, "mem",
                new MergeOptions { Combination = Combination.DareLinearSvd, Density = 0.6, Seed = seed, SvdRank = outF });
            var d = new float[outF * inF];
            plan.ApplyTo(M + ".weight", d);
            return d;
        }
        var delta = Ref.Of(ax, bx, r, inF, outF, 2.0, 1.5).Delta();
        double scale = MaxAbs(delta) * 1.5 / 0.6;
        var first = Run(11);
        int kept = 0;
        for (int i = 0; i < first.Length; i++)
        {
            double full = 1.5 * delta[i] / 0.6;
            // Each element is either dropped (≈ 0 up to the SVD round trip) or kept and rescaled.
            if (Math.Abs(first[i]) > 1e-4 * scale)
            {
                kept++;
                Assert.AreEqual(full, first[i], 1e-5 * scale, $"kept element {i} is w·ΔW/density");
            }
        }
        double fraction = kept / (double)first.Length;
        Assert.IsTrue(fraction is > 0.52 and < 0.68, $"kept fraction {fraction} (density 0.6)");
        CollectionAssert.AreEqual(first, Run(11), "same seed, same mask");
        CollectionAssert.AreNotEqual(first, Run(12), "another seed, another mask");
    }

    [TestMethod]
    public void Dare_IntoWeights_EqualsTheCombinedAdapterMerged()
    {
        // PEFT builds the combined adapter, then merges it: the masks must be the same on both paths.
        using var f = new Fixture(fanInFanOut: false);
        foreach (var c in new[] { Combination.DareLinear, Combination.DareTies, Combination.DareTiesSvd })
        {
            var options = new MergeOptions { Combination = c, Density = 0.5, Seed = 5 };
            string outDir = Path.Combine(NewDir(), c.ToName());
            AdapterCombiner.Combine(f.Adapters, outDir, options);
            using var combined = PeftAdapter.Load(outDir);
            var w = Random(OutF * InF, 9);
            var viaAdapter = (float[])w.Clone();
            combined.ReadUpdate(M).MergeInto(viaAdapter);
            var direct = (float[])w.Clone();
            MergePlan.Create(f.Adapters, f.Target(), "mem", options).ApplyTo(M + ".weight", direct);
            CollectionAssert.AreEqual(viaAdapter, direct, c.ToName());
        }
    }

    [TestMethod]
    public void CombinationNames_AreExactlyPeftsPlusDeltaSum()
    {
        CollectionAssert.AreEquivalent(
            new[] { "delta_sum", "linear", "cat", "svd", "ties", "ties_svd", "dare_linear", "dare_ties", "dare_linear_svd", "dare_ties_svd", "magnitude_prune", "magnitude_prune_svd" },
            CombinationNames.All.ToArray());
        foreach (var c in Enum.GetValues<Combination>())
        {
            Assert.IsTrue(CombinationNames.TryParse(c.ToName(), out var back) && back == c, c.ToString());
        }
        Assert.IsFalse(CombinationNames.TryParse("Linear", out _), "spellings are exact");
        Assert.AreEqual(Combination.DeltaSum, MergeOptions.Default.Combination, "the default is exact");
    }
}
