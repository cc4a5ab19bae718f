using OnnxLora.Core;
using OnnxLora.Validate.Internals;

namespace OnnxLora.Validate.Tests;

[TestClass]
public sealed class ComparisonMathTests
{
    [TestMethod]
    public void Compare_RandomArrays_MatchesIndependentFormulas()
    {
        var rng = new Random(17);
        int n = 3 * 5 * 11;
        var r = new float[n];
        var a = new float[n];
        for (int i = 0; i < n; i++)
        {
            r[i] = (float)(rng.NextDouble() * 4 - 2);
            a[i] = r[i] + (float)((rng.NextDouble() - 0.5) * 0.01);
        }
        r[7] = 0;
        a[7] = 1e-7f; // relative error uses the 1e-6 floor here: 0.1

        var c = ComparisonMath.Compare("x", [3, 5, 11], DType.F32, DType.F32, a, r, 1e-3, 1e-3, top1: true);

        double maxAbs = 0, maxRel = 0, sq = 0, dot = 0, na = 0, nr = 0, refMax = 0;
        long beyond = 0;
        int worst = -1;
        for (int i = 0; i < n; i++)
        {
            double d = Math.Abs((double)a[i] - r[i]);
            if (d > maxAbs)
            {
                maxAbs = d;
                worst = i;
            }
            maxRel = Math.Max(maxRel, d / Math.Max(Math.Abs((double)r[i]), 1e-6));
            sq += d * d;
            dot += (double)a[i] * r[i];
            na += (double)a[i] * a[i];
            nr += (double)r[i] * r[i];
            refMax = Math.Max(refMax, Math.Abs((double)r[i]));
            beyond += d > 1e-3 + 1e-3 * Math.Abs((double)r[i]) ? 1 : 0;
        }
        Assert.AreEqual(maxAbs, c.MaxAbsError, 0);
        Assert.AreEqual(maxRel, c.MaxRelError, 1e-15 * maxRel);
        Assert.AreEqual(Math.Sqrt(sq / n), c.RmsError, 1e-15);
        Assert.AreEqual(dot / Math.Sqrt(na * nr), c.CosineSimilarity, 1e-14);
        Assert.AreEqual(refMax, c.ReferenceMaxAbs, 0);
        Assert.AreEqual(beyond, c.BeyondTolerance);
        Assert.IsTrue(beyond > 0 && beyond < n, $"the test needs some elements beyond tolerance, got {beyond}");
        CollectionAssert.AreEqual(new long[] { worst / 55, worst / 11 % 5, worst % 11 }, c.WorstIndex!.ToArray());
        Assert.AreEqual(a[worst], c.WorstActual);
        Assert.AreEqual(r[worst], c.WorstReference);
        Assert.AreEqual((long)n, c.Elements);
        Assert.AreEqual(15L, c.Top1Positions);
    }

    [TestMethod]
    public void Compare_NonFinite_IsCountedAndExcludedFromMetrics()
    {
        float[] r = [1, 2, 3, 4];
        float[] a = [1, float.NaN, 3.5f, float.PositiveInfinity];

        var c = ComparisonMath.Compare("x", [4], DType.F32, DType.F32, a, r, 0, 0, top1: false);

        Assert.AreEqual(2L, c.NonFiniteActual);
        Assert.AreEqual(0L, c.NonFiniteReference);
        Assert.AreEqual(0.5, c.MaxAbsError);
        Assert.AreEqual(Math.Sqrt(0.25 / 2), c.RmsError, 1e-15);
        Assert.AreEqual(3L, c.BeyondTolerance, "two non-finite pairs and one finite pair beyond a zero tolerance");
        Assert.IsNull(c.Top1Agreement);
    }

    [TestMethod]
    public void Compare_ZeroVectors_CosineConventions()
    {
        float[] zeros = [0, 0, 0];
        float[] ones = [1, 1, 1];
        Assert.AreEqual(1.0, ComparisonMath.Compare("x", [3], DType.F32, DType.F32, zeros, zeros, 0, 0, false).CosineSimilarity);
        Assert.AreEqual(0.0, ComparisonMath.Compare("x", [3], DType.F32, DType.F32, zeros, ones, 0, 0, false).CosineSimilarity);
        Assert.AreEqual(-1.0, ComparisonMath.Compare("x", [3], DType.F32, DType.F32, [-1, -1, -1], ones, 0, 0, false).CosineSimilarity, 1e-15);
    }

    [TestMethod]
    public void Top1_CountsRowsWhoseFirstArgmaxAgrees()
    {
        // rows of 3: [argmax 2 | 2] agree, [0 | 1] differ, [tie 0,1 → 0 | 0] agree
        float[] a = [0, 1, 5, 9, 1, 2, 4, 4, 0];
        float[] r = [1, 0, 7, 0, 3, 1, 6, 1, 1];

        var (share, positions) = ComparisonMath.Top1(a, r, 3);

        Assert.AreEqual(3L, positions);
        Assert.AreEqual(2.0 / 3.0, share, 1e-15);
        Assert.AreEqual(1, ComparisonMath.ArgMax([float.NaN, 2, 1]));
    }
}

[TestClass]
public sealed class StatsTests
{
    [TestMethod]
    public void Summarise_MatchesHandComputedValues()
    {
        double[] samples = [5, 1, 4, 2, 3];

        var s = Stats.Summarise(samples);

        Assert.AreEqual(5, s.Count);
        Assert.AreEqual(3.0, s.MeanMs);
        Assert.AreEqual(Math.Sqrt(2.5), s.StdMs, 1e-15); // sum of squares 10 over n−1 = 4
        Assert.AreEqual(1.0, s.MinMs);
        Assert.AreEqual(3.0, s.P50Ms);
        Assert.AreEqual(4.6, s.P90Ms, 1e-12); // rank 0.9·4 = 3.6 → 4 + 0.6·1
        Assert.AreEqual(4.8, s.P95Ms, 1e-12);
        Assert.AreEqual(4.96, s.P99Ms, 1e-12);
        Assert.AreEqual(5.0, s.MaxMs);
    }

    [TestMethod]
    public void Ratio_UsesPerPairRatios()
    {
        double[] num = [2, 4, 9, 8];
        double[] den = [1, 2, 3, 8]; // ratios 2, 2, 3, 1 → sorted 1, 2, 2, 3

        var r = Stats.Ratio("a/b", ModelRole.Merged, ModelRole.Base, num, den);

        Assert.AreEqual(4, r.Pairs);
        Assert.AreEqual(2.0, r.Median);
        Assert.AreEqual(2.0, r.Mean);
        Assert.AreEqual(1.3, r.P10, 1e-12);
        Assert.AreEqual(2.7, r.P90, 1e-12);
        Assert.AreEqual(1.75, r.Q25, 1e-12);
        Assert.AreEqual(2.25, r.Q75, 1e-12);
    }

    [TestMethod]
    public void ParseKb_ReadsProcStatusLines()
    {
        string[] lines = ["Name:\tdotnet", "VmHWM:\t  123456 kB", "VmRSS:\t    1024 kB"];

        Assert.AreEqual(123456L * 1024, ProcessMemory.ParseKb(lines, "VmHWM:"));
        Assert.AreEqual(1024L * 1024, ProcessMemory.ParseKb(lines, "VmRSS:"));
        Assert.IsNull(ProcessMemory.ParseKb(lines, "VmPeak:"));
        Assert.IsNull(ProcessMemory.ParseKb(["VmHWM: lots"], "VmHWM:"));
    }
}
