using OnnxLora.Models.Lora;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace OnnxLora.Models.Tests.Lora;

[TestClass]
public sealed class LoraLayerTests
{
    private const int In = 6, Out = 5, Batch = 3, Rank = 2;

    [TestMethod]
    public void Forward_FreshAdapter_EqualsBaseLayer()
    {
        using var scope = NewDisposeScope();
        var baseLayer = MakeLinear(seed: 1, bias: true);
        var x = Random([Batch, In], seed: 2);
        var expected = baseLayer.call(x).data<float>().ToArray();
        using var lora = new LoraLinear(baseLayer, Rank, alpha: 16, generator: new Generator(3));
        lora.eval();
        CollectionAssert.AreEqual(expected, lora.call(x).data<float>().ToArray());
        Assert.IsTrue(lora.LoraA.data<float>().ToArray().Any(v => v != 0), "A must be initialised randomly");
        Assert.IsTrue(lora.LoraB.data<float>().ToArray().All(v => v == 0), "B must start at zero");
    }

    [TestMethod]
    public void LoraA_DefaultInit_IsKaimingUniformBoundOneOverSqrtIn()
    {
        using var baseLayer = MakeLinear(seed: 1, bias: false);
        using var lora = new LoraLinear(baseLayer, rank: 64, alpha: 8, generator: new Generator(5));
        var a = lora.LoraA.data<float>().ToArray();
        double bound = 1 / Math.Sqrt(In);
        Assert.IsTrue(a.All(v => Math.Abs(v) <= bound));
        Assert.IsGreaterThan(0.8 * bound, (double)a.Max(Math.Abs), "values should fill the range");
    }

    [TestMethod]
    public void LoraA_GaussianInit_HasStdOneOverRank()
    {
        using var baseLayer = nn.Linear(400, 3);
        using var lora = new LoraLinear(baseLayer, rank: 4, alpha: 8, initGaussian: true, generator: new Generator(5));
        var a = lora.LoraA.data<float>().ToArray();
        double std = Math.Sqrt(a.Select(v => (double)v * v).Average());
        Assert.AreEqual(0.25, std, 0.02);
    }

    [TestMethod]
    public void Forward_WithAdapter_MatchesPlainLoops()
    {
        Forward_MatchesReference(useRsLora: false);
    }

    [TestMethod]
    public void Forward_WithRsLora_ScalesByAlphaOverSqrtRank()
    {
        Forward_MatchesReference(useRsLora: true);
    }

    private static void Forward_MatchesReference(bool useRsLora)
    {
        using var scope = NewDisposeScope();
        var baseLayer = MakeLinear(seed: 1, bias: true);
        using var lora = new LoraLinear(baseLayer, Rank, alpha: 3, dropout: 0.5, useRsLora: useRsLora, generator: new Generator(3));
        SetRandom(lora.LoraB, seed: 4);
        lora.eval(); // dropout inactive
        var x = Random([Batch, In], seed: 2);
        var y = lora.call(x).data<float>().ToArray();

        double s = useRsLora ? 3 / Math.Sqrt(Rank) : 3.0 / Rank;
        Assert.AreEqual(s, lora.Scaling, 1e-12);
        var (w, b, a, bm, xs) = (Values(lora.Weight), Values(lora.Bias!), Values(lora.LoraA), Values(lora.LoraB), Values(x));
        for (int n = 0; n < Batch; n++)
        {
            for (int o = 0; o < Out; o++)
            {
                double expected = b[o];
                for (int i = 0; i < In; i++)
                {
                    expected += xs[n * In + i] * w[o * In + i];
                }
                for (int r = 0; r < Rank; r++)
                {
                    double ax = 0;
                    for (int i = 0; i < In; i++)
                    {
                        ax += a[r * In + i] * xs[n * In + i];
                    }
                    expected += s * bm[o * Rank + r] * ax;
                }
                Assert.AreEqual(expected, y[n * Out + o], 1e-5);
            }
        }
    }

    [TestMethod]
    public void Forward_AdapterDisabled_IsBaseOnly()
    {
        using var scope = NewDisposeScope();
        var baseLayer = MakeLinear(seed: 1, bias: true);
        var x = Random([Batch, In], seed: 2);
        var expected = baseLayer.call(x).data<float>().ToArray();
        using var lora = new LoraLinear(baseLayer, Rank, alpha: 3, generator: new Generator(3));
        SetRandom(lora.LoraB, seed: 4);
        lora.AdapterEnabled = false;
        CollectionAssert.AreEqual(expected, lora.call(x).data<float>().ToArray());
    }

    [TestMethod]
    public void Dora_Magnitude_StartsAtRowNormsOfBaseWeight()
    {
        using var baseLayer = MakeLinear(seed: 1, bias: false);
        using var lora = new LoraLinear(baseLayer, Rank, alpha: 4, useDora: true, generator: new Generator(3));
        var w = Values(lora.Weight);
        var m = Values(lora.Magnitude!);
        for (int o = 0; o < Out; o++)
        {
            double norm = Math.Sqrt(Enumerable.Range(0, In).Sum(i => w[o * In + i] * w[o * In + i]));
            Assert.AreEqual(norm, m[o], 1e-6);
        }
    }

    [TestMethod]
    public void Dora_Forward_MatchesNormalisedMergedWeight()
    {
        using var scope = NewDisposeScope();
        var baseLayer = MakeLinear(seed: 1, bias: true);
        using var lora = new LoraLinear(baseLayer, Rank, alpha: 4, useDora: true, generator: new Generator(3));
        SetRandom(lora.LoraB, seed: 4);
        SetRandom(lora.Magnitude!, seed: 5);
        lora.eval();
        var x = Random([Batch, In], seed: 2);
        var y = lora.call(x).data<float>().ToArray();
        var expected = DoraReference(lora, Values(x));
        for (int k = 0; k < y.Length; k++)
        {
            Assert.AreEqual(expected[k], y[k], 1e-5);
        }
    }

    [TestMethod]
    public void Dora_Backward_TreatsRowNormAsConstant()
    {
        using var scope = NewDisposeScope();
        var baseLayer = MakeLinear(seed: 1, bias: true);
        using var lora = new LoraLinear(baseLayer, Rank, alpha: 4, useDora: true, generator: new Generator(3));
        SetRandom(lora.LoraB, seed: 4);
        SetRandom(lora.Magnitude!, seed: 5);
        lora.BaseLayer.weight!.requires_grad = false;
        lora.BaseLayer.bias!.requires_grad = false;
        var x = Random([Batch, In], seed: 2);
        var g = Random([Batch, Out], seed: 6);
        (lora.call(x) * g).sum().backward();

        // y[n,o] = m[o]/‖W'[o]‖·Σ_i x[n,i]·W'[o,i] + b[o], W' = W + s·B·A, with ‖W'[o]‖ a constant:
        // dL/dW'[o,i] = Σ_n g[n,o]·m[o]/‖W'[o]‖·x[n,i];  dL/dB[o,r] = s·Σ_i dL/dW'[o,i]·A[r,i];
        // dL/dm[o] = Σ_n g[n,o]·(x·W'ᵀ)[n,o]/‖W'[o]‖.
        var (w, a, bm, m, xs, gs) = (Values(lora.Weight), Values(lora.LoraA), Values(lora.LoraB), Values(lora.Magnitude!), Values(x), Values(g));
        double s = lora.Scaling;
        var merged = Merged(w, a, bm, s);
        var norms = Enumerable.Range(0, Out).Select(o => Math.Sqrt(Enumerable.Range(0, In).Sum(i => merged[o * In + i] * merged[o * In + i]))).ToArray();
        var gradB = Values(lora.LoraB.grad!);
        var gradM = Values(lora.Magnitude!.grad!);
        for (int o = 0; o < Out; o++)
        {
            double expectedM = 0;
            for (int n = 0; n < Batch; n++)
            {
                double xw = Enumerable.Range(0, In).Sum(i => xs[n * In + i] * merged[o * In + i]);
                expectedM += gs[n * Out + o] * xw / norms[o];
            }
            Assert.AreEqual(expectedM, gradM[o], 1e-5);
            for (int r = 0; r < Rank; r++)
            {
                double expectedB = 0;
                for (int i = 0; i < In; i++)
                {
                    double dW = Enumerable.Range(0, Batch).Sum(n => gs[n * Out + o] * m[o] / norms[o] * xs[n * In + i]);
                    expectedB += s * dW * a[r * In + i];
                }
                Assert.AreEqual(expectedB, gradB[o * Rank + r], 1e-5);
            }
        }
    }

    [TestMethod]
    public void ReplaceBaseWeight_ReturnsPreviousAndRestores()
    {
        using var scope = NewDisposeScope();
        var baseLayer = MakeLinear(seed: 1, bias: false);
        using var lora = new LoraLinear(baseLayer, Rank, alpha: 4, generator: new Generator(3));
        var original = Values(lora.Weight);
        var merged = Random([Out, In], seed: 9);
        var previous = lora.ReplaceBaseWeight(merged);
        CollectionAssert.AreEqual(Values(merged), Values(lora.Weight));
        CollectionAssert.AreEqual(original, Values(previous));
        lora.ReplaceBaseWeight(previous).Dispose();
        CollectionAssert.AreEqual(original, Values(lora.Weight));
        var ex = Assert.ThrowsExactly<ArgumentException>(() => lora.ReplaceBaseWeight(zeros(In, Out)));
        StringAssert.Contains(ex.Message, "[6, 5]");
    }

    [TestMethod]
    public void Constructor_NonPositiveRank_Throws()
    {
        using var baseLayer = MakeLinear(seed: 1, bias: false);
        var ex = BadInput.Throws(() => new LoraLinear(baseLayer, 0, alpha: 4));
        StringAssert.Contains(ex.Message, "rank");
    }

    [TestMethod]
    public void Embedding_FreshAdapter_EqualsBaseAndAIsZero()
    {
        using var scope = NewDisposeScope();
        var emb = nn.Embedding(10, 4);
        var ids = tensor(new long[] { 3, 7, 3, 0 }, [2, 2]);
        var expected = emb.call(ids).data<float>().ToArray();
        using var lora = new LoraEmbedding(emb, Rank, alpha: 4, generator: new Generator(1));
        CollectionAssert.AreEqual(expected, lora.call(ids).data<float>().ToArray());
        Assert.IsTrue(Values(lora.LoraEmbeddingA).All(v => v == 0));
        Assert.IsTrue(Values(lora.LoraEmbeddingB).Any(v => v != 0));
    }

    [TestMethod]
    public void Embedding_Forward_AddsScaledTransposedProduct()
    {
        using var scope = NewDisposeScope();
        var emb = nn.Embedding(10, 4);
        using var lora = new LoraEmbedding(emb, Rank, alpha: 6, generator: new Generator(1));
        SetRandom(lora.LoraEmbeddingA, seed: 8);
        long[] idList = [3, 7, 3, 0];
        var y = lora.call(tensor(idList, [2, 2])).data<float>().ToArray();
        var (e, a, b) = (Values(lora.Weight), Values(lora.LoraEmbeddingA), Values(lora.LoraEmbeddingB));
        double s = 6.0 / Rank;
        for (int t = 0; t < idList.Length; t++)
        {
            for (int d = 0; d < 4; d++)
            {
                // ΔE = (B·A)ᵀ·s, so ΔE[id, d] = s·Σ_r B[d, r]·A[r, id].
                double expected = e[idList[t] * 4 + d] + s * Enumerable.Range(0, Rank).Sum(r => b[d * Rank + r] * a[r * 10 + idList[t]]);
                Assert.AreEqual(expected, y[t * 4 + d], 1e-5);
            }
        }
    }

    private static double[] DoraReference(LoraLinear lora, double[] xs)
    {
        var (w, bias, a, bm, m) = (Values(lora.Weight), Values(lora.Bias!), Values(lora.LoraA), Values(lora.LoraB), Values(lora.Magnitude!));
        var merged = Merged(w, a, bm, lora.Scaling);
        var y = new double[Batch * Out];
        for (int o = 0; o < Out; o++)
        {
            double norm = Math.Sqrt(Enumerable.Range(0, In).Sum(i => merged[o * In + i] * merged[o * In + i]));
            for (int n = 0; n < Batch; n++)
            {
                double xw = Enumerable.Range(0, In).Sum(i => xs[n * In + i] * merged[o * In + i]);
                y[n * Out + o] = m[o] / norm * xw + bias[o];
            }
        }
        return y;
    }

    /// <summary>W + s·B·A in double.</summary>
    private static double[] Merged(double[] w, double[] a, double[] b, double s)
    {
        var merged = (double[])w.Clone();
        for (int o = 0; o < Out; o++)
        {
            for (int i = 0; i < In; i++)
            {
                for (int r = 0; r < Rank; r++)
                {
                    merged[o * In + i] += s * b[o * Rank + r] * a[r * In + i];
                }
            }
        }
        return merged;
    }

    private static Linear MakeLinear(long seed, bool bias)
    {
        var layer = nn.Linear(In, Out, hasBias: bias);
        SetRandom(layer.weight!, seed);
        if (bias)
        {
            SetRandom(layer.bias!, seed + 100);
        }
        return layer;
    }

    private static Tensor Random(long[] shape, long seed)
    {
        using var g = new Generator((ulong)seed);
        return randn(shape, generator: g);
    }

    private static void SetRandom(Tensor t, long seed)
    {
        using var g = new Generator((ulong)seed);
        using var noGrad = no_grad();
        t.normal_(0, 0.7, g);
    }

    private static double[] Values(Tensor t) => t.detach().data<float>().ToArray().Select(v => (double)v).ToArray();
}
