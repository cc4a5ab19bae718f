using OnnxLora.Core.Safetensors;

namespace OnnxLora.Models.Tests.Reference;

/// <summary>Every tensor of a checkpoint folder as double arrays, read with Core's reader (not through the model).</summary>
internal sealed class Weights
{
    private readonly Dictionary<string, double[]> _values = new(StringComparer.Ordinal);
    private readonly Dictionary<string, long[]> _shapes = new(StringComparer.Ordinal);

    public static Weights Read(string directory)
    {
        var w = new Weights();
        using var checkpoint = SafetensorsCheckpoint.Open(directory);
        foreach (var t in checkpoint.Tensors)
        {
            w._values[t.Name] = checkpoint.ReadSingles(t.Name).Select(v => (double)v).ToArray();
            w._shapes[t.Name] = t.Shape.ToArray();
        }
        return w;
    }

    public IEnumerable<string> Names => _values.Keys;

    public bool Has(string name) => _values.ContainsKey(name);

    public double[] this[string name]
    {
        get => _values[name];
        set => _values[name] = value;
    }

    public long[] Shape(string name) => _shapes[name];
}

/// <summary>Plain double-precision building blocks for the reference forwards.</summary>
internal static class Ops
{
    /// <summary>y[o] = Σ_i W[o, i]·x[i] + b[o] for W stored row-major [out, in].</summary>
    public static double[] Linear(double[] x, double[] w, double[]? b, int outF)
    {
        int inF = x.Length;
        var y = new double[outF];
        for (int o = 0; o < outF; o++)
        {
            double s = b is null ? 0 : b[o];
            for (int i = 0; i < inF; i++)
            {
                s += w[o * inF + i] * x[i];
            }
            y[o] = s;
        }
        return y;
    }

    public static double[] RmsNorm(double[] x, double[] weight, double eps)
    {
        double ms = x.Sum(v => v * v) / x.Length;
        double inv = 1.0 / Math.Sqrt(ms + eps);
        return x.Select((v, i) => v * inv * weight[i]).ToArray();
    }

    public static double[] LayerNorm(double[] x, double[] weight, double[] bias, double eps)
    {
        double mean = x.Average();
        double var = x.Sum(v => (v - mean) * (v - mean)) / x.Length;
        double inv = 1.0 / Math.Sqrt(var + eps);
        return x.Select((v, i) => (v - mean) * inv * weight[i] + bias[i]).ToArray();
    }

    public static double Silu(double v) => v / (1 + Math.Exp(-v));

    /// <summary>Exact GELU: v·Φ(v) = v/2·(1 + erf(v/√2)).</summary>
    public static double Gelu(double v) => 0.5 * v * (1 + Erf(v / Math.Sqrt(2)));

    /// <summary>erf: Maclaurin series for |x| ≤ 3 (error ~1e-13), asymptotic erfc series beyond (error ~1e-8).</summary>
    public static double Erf(double x)
    {
        double a = Math.Abs(x);
        if (a > 3)
        {
            double inv2 = 1 / (2 * a * a);
            double series = 1 - inv2 + 3 * inv2 * inv2 - 15 * inv2 * inv2 * inv2 + 105 * inv2 * inv2 * inv2 * inv2;
            double erfc = Math.Exp(-a * a) / (a * Math.Sqrt(Math.PI)) * series;
            return Math.Sign(x) * (1 - erfc);
        }
        double sum = 0, term = x;
        for (int n = 0; n < 200; n++)
        {
            double add = term / (2 * n + 1);
            sum += add;
            if (Math.Abs(add) < 1e-17)
            {
                break;
            }
            term *= -x * x / (n + 1);
        }
        return 2 / Math.Sqrt(Math.PI) * sum;
    }

    public static double[] Softmax(double[] scores)
    {
        double max = scores.Max();
        var e = scores.Select(s => Math.Exp(s - max)).ToArray();
        double sum = e.Sum();
        return e.Select(v => v / sum).ToArray();
    }

    public static double[] Row(double[] matrix, long row, long width) => matrix.AsSpan((int)(row * width), (int)width).ToArray();

    public static double[] Add(double[] a, double[] b) => a.Select((v, i) => v + b[i]).ToArray();
}
