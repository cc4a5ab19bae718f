using OnnxLora.Core.Peft;
using static OnnxLora.Merge.Tests.TestData;

namespace OnnxLora.Merge.Tests;

[TestClass]
public sealed class ModuleUpdateTests
{
    private const string M = "model.layers.0.self_attn.q_proj";
    private const double Tol = 1e-6;

    [TestMethod]
    public void Merge_Lora_EqualsWPlusScaledBA()
    {
        const int r = 3, inF = 7, outF = 5;
        var (adapter, a, b) = Lora(M, r, inF, outF, alpha: 6, seed: 10);
        using var _ = adapter;
        var w = Random(outF * inF, 1);
        var expected = Add(w, Scaled(Product(b, a, outF, r, inF), 6.0 / r));

        var merged = (float[])w.Clone();
        adapter.ReadUpdate(adapter.Get(M)).MergeInto(merged);
        AssertClose(expected, merged, Tol, "W'");

        var delta = adapter.ReadUpdate(M).Delta();
        AssertClose(Scaled(Product(b, a, outF, r, inF), 2.0), delta, Tol, "ΔW");
    }

    [TestMethod]
    public void Merge_WithRsLora_ScalesByAlphaOverSqrtRank()
    {
        const int r = 4, inF = 6, outF = 6;
        var (adapter, a, b) = Lora(M, r, inF, outF, alpha: 8, seed: 20, rslora: true);
        using var _ = adapter;
        var delta = adapter.ReadUpdate(M).Delta();
        AssertClose(Scaled(Product(b, a, outF, r, inF), 8.0 / Math.Sqrt(r)), delta, Tol, "ΔW (rsLoRA)");
    }

    [TestMethod]
    public void Merge_WithRankAndAlphaPattern_UsesPerModuleValues()
    {
        const string v = "model.layers.0.self_attn.v_proj";
        var aq = Random(2 * 6, 1);
        var bq = Random(4 * 2, 2);
        var av = Random(3 * 6, 3);
        var bv = Random(4 * 3, 4);
        var config = new PeftAdapterConfig
        {
            R = 2,
            Alpha = 4,
            RankPattern = new OrderedDictionary<string, int> { ["v_proj"] = 3 },
            AlphaPattern = new OrderedDictionary<string, double> { ["v_proj"] = 9 },
        };
        using var adapter = Adapter(config,
            (Key(M, ".lora_A.weight"), [2, 6], aq), (Key(M, ".lora_B.weight"), [4, 2], bq),
            (Key(v, ".lora_A.weight"), [3, 6], av), (Key(v, ".lora_B.weight"), [4, 3], bv));
        AssertClose(Scaled(Product(bq, aq, 4, 2, 6), 4.0 / 2), adapter.ReadUpdate(M).Delta(), Tol, "q");
        AssertClose(Scaled(Product(bv, av, 4, 3, 6), 9.0 / 3), adapter.ReadUpdate(v).Delta(), Tol, "v");
    }

    [TestMethod]
    public void Merge_FanInFanOut_AddsTransposedDelta()
    {
        const int r = 2, inF = 5, outF = 3;
        var (adapter, a, b) = Lora("h.0.attn.c_attn", r, inF, outF, alpha: 4, seed: 30, fanInFanOut: true);
        using var _ = adapter;
        var m = adapter.Get("h.0.attn.c_attn");
        CollectionAssert.AreEqual(new long[] { inF, outF }, m.WeightShape.ToArray());
        var w = Random(inF * outF, 2);
        var expected = Add(w, Transposed(Scaled(Product(b, a, outF, r, inF), 2.0), outF, inF));
        var merged = (float[])w.Clone();
        adapter.ReadUpdate(m).MergeInto(merged);
        AssertClose(expected, merged, Tol, "W' [in,out]");
    }

    [TestMethod]
    public void Merge_EmbeddingLora_AddsTransposedBA()
    {
        const int r = 2, num = 9, dim = 4;
        var ea = Random(r * num, 1);
        var eb = Random(dim * r, 2);
        using var adapter = Adapter(new PeftAdapterConfig { R = r, Alpha = 3 },
            (Key("model.embed_tokens", ".lora_embedding_A"), [r, num], ea), (Key("model.embed_tokens", ".lora_embedding_B"), [dim, r], eb));
        var m = adapter.Get("model.embed_tokens");
        CollectionAssert.AreEqual(new long[] { num, dim }, m.WeightShape.ToArray());
        var w = Random(num * dim, 3);
        // Δ for weight [num, dim] = s·(B·A)ᵀ.
        var expected = Add(w, Transposed(Scaled(Product(eb, ea, dim, r, num), 1.5), dim, num));
        var merged = (float[])w.Clone();
        adapter.ReadUpdate(m).MergeInto(merged);
        AssertClose(expected, merged, Tol, "embedding W'");
    }

    [TestMethod]
    public void Merge_Dora_NormalizesEachOutputRowToMagnitude()
    {
        const int r = 2, inF = 6, outF = 4;
        var a = Random(r * inF, 1);
        var b = Random(outF * r, 2);
        var mag = Random(outF, 3).Select(x => Math.Abs(x) + 0.5f).ToArray();
        using var adapter = Adapter(new PeftAdapterConfig { R = r, Alpha = 4, UseDora = true },
            (Key(M, ".lora_A.weight"), [r, inF], a), (Key(M, ".lora_B.weight"), [outF, r], b), (Key(M, ".lora_magnitude_vector"), [outF], mag));
        var w = Random(outF * inF, 4);
        var v = Add(w, Scaled(Product(b, a, outF, r, inF), 2.0));
        var expected = new double[v.Length];
        for (int o = 0; o < outF; o++)
        {
            double norm = Math.Sqrt(Enumerable.Range(0, inF).Sum(i => v[o * inF + i] * v[o * inF + i]));
            for (int i = 0; i < inF; i++)
            {
                expected[o * inF + i] = mag[o] * v[o * inF + i] / norm;
            }
        }
        var merged = (float[])w.Clone();
        adapter.ReadUpdate(adapter.Get(M)).MergeInto(merged);
        AssertClose(expected, merged, Tol, "DoRA W'");
        Assert.ThrowsExactly<InvalidOperationException>(() => adapter.ReadUpdate(M).Delta());
        Assert.ThrowsExactly<InvalidOperationException>(() => adapter.ReadUpdate(adapter.Get(M)).UnmergeFrom(merged));
    }

    [TestMethod]
    public void Merge_DoraWithFanInFanOut_NormalizesStoredColumns()
    {
        const int r = 2, inF = 5, outF = 3;
        var a = Random(r * inF, 1);
        var b = Random(outF * r, 2);
        var mag = new float[] { 1.5f, 0.7f, 2.0f };
        using var adapter = Adapter(new PeftAdapterConfig { R = r, Alpha = 2, UseDora = true, FanInFanOut = true },
            (Key(M, ".lora_A.weight"), [r, inF], a), (Key(M, ".lora_B.weight"), [outF, r], b), (Key(M, ".lora_magnitude_vector"), [outF], mag));
        var wStored = Random(inF * outF, 4);
        var wOutIn = Transposed(wStored.Select(x => (double)x).ToArray(), inF, outF);
        var v = Add(wOutIn, Product(b, a, outF, r, inF));
        var expectedOutIn = new double[v.Length];
        for (int o = 0; o < outF; o++)
        {
            double norm = Math.Sqrt(Enumerable.Range(0, inF).Sum(i => v[o * inF + i] * v[o * inF + i]));
            for (int i = 0; i < inF; i++)
            {
                expectedOutIn[o * inF + i] = mag[o] * v[o * inF + i] / norm;
            }
        }
        var merged = (float[])wStored.Clone();
        adapter.ReadUpdate(adapter.Get(M)).MergeInto(merged);
        AssertClose(Transposed(expectedOutIn, outF, inF), merged, Tol, "DoRA W' [in,out]");
    }

    [TestMethod]
    public void Merge_LoHa_IsHadamardOfTwoProductsTimesAlphaOverR()
    {
        const int r = 2, inF = 5, outF = 4;
        var w1a = Random(outF * r, 1);
        var w1b = Random(r * inF, 2);
        var w2a = Random(outF * r, 3);
        var w2b = Random(r * inF, 4);
        using var adapter = Adapter(new PeftAdapterConfig { PeftType = PeftType.LoHa, R = r, Alpha = 3 },
            (Key(M, ".hada_w1_a"), [outF, r], w1a), (Key(M, ".hada_w1_b"), [r, inF], w1b),
            (Key(M, ".hada_w2_a"), [outF, r], w2a), (Key(M, ".hada_w2_b"), [r, inF], w2b));
        var p1 = Product(w1a, w1b, outF, r, inF);
        var p2 = Product(w2a, w2b, outF, r, inF);
        var expected = p1.Select((x, i) => x * p2[i] * 3.0 / r).ToArray();
        AssertClose(expected, adapter.ReadUpdate(M).Delta(), Tol, "LoHa ΔW");
    }

    [TestMethod]
    public void Merge_LoKr_IsKroneckerTimesAlphaOverR()
    {
        // w1 [2, 3] full, w2 = w2_a [4, 2] · w2_b [2, 5]: ΔW [8, 15].
        const int r = 2;
        var w1 = Random(2 * 3, 1);
        var w2a = Random(4 * r, 2);
        var w2b = Random(r * 5, 3);
        using var adapter = Adapter(new PeftAdapterConfig { PeftType = PeftType.LoKr, R = r, Alpha = 1 },
            (Key(M, ".lokr_w1"), [2, 3], w1), (Key(M, ".lokr_w2_a"), [4, r], w2a), (Key(M, ".lokr_w2_b"), [r, 5], w2b));
        var w2 = Product(w2a, w2b, 4, r, 5);
        var expected = new double[8 * 15];
        for (int i1 = 0; i1 < 2; i1++)
        {
            for (int j1 = 0; j1 < 3; j1++)
            {
                for (int i2 = 0; i2 < 4; i2++)
                {
                    for (int j2 = 0; j2 < 5; j2++)
                    {
                        expected[(i1 * 4 + i2) * 15 + j1 * 5 + j2] = w1[i1 * 3 + j1] * w2[i2 * 5 + j2] * 0.5;
                    }
                }
            }
        }
        AssertClose(expected, adapter.ReadUpdate(M).Delta(), Tol, "LoKr ΔW");
    }

    [TestMethod]
    public void Merge_LoKrBothFactored_MatchesReference()
    {
        const int r = 1;
        var w1a = Random(2 * r, 1);
        var w1b = Random(r * 2, 2);
        var w2a = Random(3 * r, 3);
        var w2b = Random(r * 3, 4);
        using var adapter = Adapter(new PeftAdapterConfig { PeftType = PeftType.LoKr, R = r, Alpha = 2, DecomposeBoth = true },
            (Key(M, ".lokr_w1_a"), [2, r], w1a), (Key(M, ".lokr_w1_b"), [r, 2], w1b),
            (Key(M, ".lokr_w2_a"), [3, r], w2a), (Key(M, ".lokr_w2_b"), [r, 3], w2b));
        var w1 = Product(w1a, w1b, 2, r, 2);
        var w2 = Product(w2a, w2b, 3, r, 3);
        var expected = new double[36];
        for (int i = 0; i < 6; i++)
        {
            for (int j = 0; j < 6; j++)
            {
                expected[i * 6 + j] = w1[(i / 3) * 2 + j / 3] * w2[(i % 3) * 3 + j % 3] * 2.0;
            }
        }
        AssertClose(expected, adapter.ReadUpdate(M).Delta(), Tol, "LoKr ΔW");
    }

    [TestMethod]
    public void Unmerge_AfterMerge_GivesBackW()
    {
        const int r = 4, inF = 16, outF = 12;
        var (adapter, _, _) = Lora(M, r, inF, outF, alpha: 8, seed: 40);
        using var __ = adapter;
        var w = Random(outF * inF, 5);
        var merged = (float[])w.Clone();
        adapter.ReadUpdate(adapter.Get(M)).MergeInto(merged);
        adapter.ReadUpdate(adapter.Get(M)).UnmergeFrom(merged);
        double scale = MaxAbs(w.Select(x => (double)x));
        AssertClose(w.Select(x => (double)x).ToArray(), merged, Tol, "unmerge(merge(W))", scale);
    }

    [TestMethod]
    public void DeltaMath_LargeProduct_UsesAllRowsInParallelCorrectly()
    {
        // Large enough to take the parallel path.
        const int rows = 300, cols = 400, k = 5;
        var l = Random(rows * k, 1);
        var r = Random(k * cols, 2);
        var dst = new float[rows * cols];
        DeltaMath.AddProduct(dst, rows, cols, l, r, k, 0.5);
        AssertClose(Scaled(Product(l, r, rows, k, cols), 0.5), dst, Tol, "product");
    }
}
