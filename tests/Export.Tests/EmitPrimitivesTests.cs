using OnnxLora.Core;
using OnnxLora.Core.Onnx;
using OnnxLora.Models.Onnx;
using static TorchSharp.torch;

namespace OnnxLora.Export.Tests;

/// <summary>Each emission helper run in ONNX Runtime against a plain double-precision computation.</summary>
[TestClass]
public sealed class EmitPrimitivesTests
{
    private const int Rows = 6, Width = 8;

    [TestMethod]
    [DataRow(17)]
    [DataRow(18)]
    [DataRow(21)]
    public void RmsNorm_MatchesReference(int opset)
    {
        float[] x = Reference.Random(Rows * Width, 1, 3);
        float[] w = Reference.Random(Width, 2);
        const double eps = 1e-5;
        using var weight = tensor(w);
        float[] actual = RunUnary(opset, (ctx, input) => ctx.Child("norm").RmsNorm(input, weight, eps), x);

        var expected = new double[x.Length];
        for (int r = 0; r < Rows; r++)
        {
            double sum = 0;
            for (int c = 0; c < Width; c++)
            {
                sum += (double)x[r * Width + c] * x[r * Width + c];
            }
            double inv = 1 / Math.Sqrt(sum / Width + eps);
            for (int c = 0; c < Width; c++)
            {
                expected[r * Width + c] = w[c] * x[r * Width + c] * inv;
            }
        }
        Assert.IsLessThan(1e-5, Reference.MaxAbsDiff(actual, expected));
    }

    [TestMethod]
    [DataRow(17)]
    [DataRow(20)]
    public void Gelu_IsExactErfGelu(int opset)
    {
        float[] x = Reference.Random(Rows * Width, 3, 4);
        float[] actual = RunUnary(opset, (ctx, input) => ctx.Gelu(input), x);
        Assert.IsLessThan(1e-6, Reference.MaxAbsDiff(actual, x.Select(v => Reference.Gelu(v)).ToArray()));
    }

    [TestMethod]
    public void Silu_MatchesReference()
    {
        float[] x = Reference.Random(Rows * Width, 4, 6);
        float[] actual = RunUnary(17, (ctx, input) => ctx.Silu(input), x);
        Assert.IsLessThan(1e-6, Reference.MaxAbsDiff(actual, x.Select(v => Reference.Silu(v)).ToArray()));
    }

    [TestMethod]
    public void Linear_StoresTransposedWeightUnderHfName()
    {
        float[] x = Reference.Random(Rows * Width, 5);
        float[] w = Reference.Random(3 * Width, 6); // [out = 3, in = 8]
        float[] b = [0.5f, -1f, 2f];
        using var weight = tensor(w, [3, Width]);
        using var bias = tensor(b);
        var builder = new OnnxGraphBuilder(17);
        var ctx = new OnnxEmitContext(builder);
        string input = builder.AddInput("x", DType.F32, Rows, Width);
        string y = ctx.Child("proj").Linear(input, weight, bias);
        builder.AddNode("Identity", [y], ["y"]);
        builder.AddOutput("y", DType.F32, Rows, 3);
        var model = builder.Build();

        var stored = model.Graph.Initializer.Single(t => t.Name == "proj.weight");
        CollectionAssert.AreEqual(new long[] { Width, 3 }, stored.Dims.ToArray());
        Assert.IsTrue(model.Graph.Node.Any(n => n.Name == "/proj/MatMul"));
        using var ort = OrtRunner.FromBytes(OnnxFile.ToBytes(model));
        float[] actual = ort.Run("y", ("x", x, [Rows, Width])).Data;
        var expected = new double[Rows * 3];
        for (int r = 0; r < Rows; r++)
        {
            for (int o = 0; o < 3; o++)
            {
                double s = b[o];
                for (int i = 0; i < Width; i++)
                {
                    s += (double)x[r * Width + i] * w[o * Width + i];
                }
                expected[r * 3 + o] = s;
            }
        }
        Assert.IsLessThan(1e-5, Reference.MaxAbsDiff(actual, expected));
    }

    [TestMethod]
    [DataRow(DType.F32, 1e-5)]
    [DataRow(DType.F16, 2e-2)]
    public void Attention_WithBooleanMask_MatchesReference(DType weightType, double tolerance)
    {
        const int heads = 2, seq = 4, d = 4;
        float[] q = Reference.Random(heads * seq * d, 7), k = Reference.Random(heads * seq * d, 8), v = Reference.Random(heads * seq * d, 9);
        bool[] allowed = new bool[seq * seq];
        for (int i = 0; i < seq; i++)
        {
            for (int j = 0; j < seq; j++)
            {
                allowed[i * seq + j] = j <= i && j != 1; // causal, key 1 is padding
            }
        }
        allowed[1 * seq + 0] = false; // row 1 keeps no key except... none: fully masked row must stay finite
        var builder = new OnnxGraphBuilder(17);
        var ctx = new OnnxEmitContext(builder, new OnnxEmitOptions { WeightType = weightType });
        var dt = ctx.ComputeType;
        string[] names = ["q", "k", "v"];
        string[] values = names.Select(n => builder.AddInput(n, DType.F32, 1, heads, seq, d)).Select(ctx.FromFloat32).ToArray();
        string mask = ctx.AdditiveMask(builder.AddInput("allowed", DType.Bool, 1, 1, seq, seq));
        string y = ctx.ToFloat32(ctx.Attention(values[0], values[1], values[2], mask, 1 / Math.Sqrt(d)));
        builder.AddNode("Identity", [y], ["y"]);
        builder.AddOutput("y", DType.F32, 1, heads, seq, d);
        using var ort = OrtRunner.FromBytes(OnnxFile.ToBytes(builder.Build()));
        long[] shape = [1, heads, seq, d];
        float[] actual = ort.Run("y", ("q", q, shape), ("k", k, shape), ("v", v, shape), ("allowed", allowed, [1, 1, seq, seq])).Data;

        var expected = new double[actual.Length];
        for (int h = 0; h < heads; h++)
        {
            for (int i = 0; i < seq; i++)
            {
                var scores = new double[seq];
                bool any = false;
                for (int j = 0; j < seq; j++)
                {
                    double s = 0;
                    for (int c = 0; c < d; c++)
                    {
                        s += (double)q[((h * seq) + i) * d + c] * k[((h * seq) + j) * d + c];
                    }
                    scores[j] = s / Math.Sqrt(d);
                    any |= allowed[i * seq + j];
                }
                // Allowed keys only; a row with none averages every key (all scores equal to the lowest float).
                double[] weights = scores.Select((s, j) => !any ? 1.0 : allowed[i * seq + j] ? Math.Exp(s) : 0.0).ToArray();
                double total = weights.Sum();
                for (int c = 0; c < d; c++)
                {
                    double acc = 0;
                    for (int j = 0; j < seq; j++)
                    {
                        acc += weights[j] / total * v[((h * seq) + j) * d + c];
                    }
                    expected[((h * seq) + i) * d + c] = acc;
                }
            }
        }
        Assert.IsLessThan(tolerance, Reference.MaxAbsDiff(actual, expected));
    }

    /// <summary>Builds x [Rows, Width] fp32 → emit → y and runs it.</summary>
    private static float[] RunUnary(int opset, Func<OnnxEmitContext, string, string> emit, float[] x)
    {
        var builder = new OnnxGraphBuilder(opset);
        var ctx = new OnnxEmitContext(builder);
        string input = builder.AddInput("x", DType.F32, Rows, Width);
        builder.AddNode("Identity", [emit(ctx, input)], ["y"]);
        builder.AddOutput("y", DType.F32, Rows, Width);
        using var ort = OrtRunner.FromBytes(OnnxFile.ToBytes(builder.Build()));
        return ort.Run("y", ("x", x, [Rows, Width])).Data;
    }
}
