namespace OnnxLora.Export.Tests;

/// <summary>Plain double-precision reference math, written independently of the code under test.</summary>
internal static class Reference
{
    /// <summary>erf by its Maclaurin series (|x| ≤ 5 keeps the cancellation far below the test tolerances).</summary>
    public static double Erf(double x)
    {
        if (Math.Abs(x) > 5)
        {
            return Math.Sign(x);
        }
        double sum = 0, term = x;
        for (int n = 0; n < 200; n++)
        {
            sum += term / (2 * n + 1);
            term *= -x * x / (n + 1);
            if (Math.Abs(term) < 1e-30)
            {
                break;
            }
        }
        return 2 / Math.Sqrt(Math.PI) * sum;
    }

    public static double Gelu(double x) => 0.5 * x * (1 + Erf(x / Math.Sqrt(2)));

    public static double Silu(double x) => x / (1 + Math.Exp(-x));

    public static float[] Random(int count, int seed, double scale = 1.0)
    {
        var random = new Random(seed);
        var result = new float[count];
        for (int i = 0; i < count; i++)
        {
            result[i] = (float)((random.NextDouble() * 2 - 1) * scale);
        }
        return result;
    }

    public static double MaxAbsDiff(ReadOnlySpan<float> a, ReadOnlySpan<double> b)
    {
        Assert.AreEqual(b.Length, a.Length, "lengths differ");
        double max = 0;
        for (int i = 0; i < a.Length; i++)
        {
            max = Math.Max(max, Math.Abs(a[i] - b[i]));
        }
        return max;
    }

    public static double MaxAbsDiff(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        Assert.AreEqual(b.Length, a.Length, "lengths differ");
        double max = 0;
        for (int i = 0; i < a.Length; i++)
        {
            double d = Math.Abs((double)a[i] - b[i]);
            if (double.IsNaN(d))
            {
                return double.PositiveInfinity;
            }
            max = Math.Max(max, d);
        }
        return max;
    }
}
