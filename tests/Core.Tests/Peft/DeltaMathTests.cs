using System.Runtime.Intrinsics.X86;
using OnnxLora.Core.Peft;

namespace OnnxLora.Core.Tests.Peft;

/// <summary>
/// <see cref="DeltaMath.AddProduct"/> against a plain column-at-a-time loop written here from its documented arithmetic
/// (each element's fp64 sum over the rank in order, fused multiply-add where the CPU has FMA; then one multiply, one add
/// and one rounding to fp32): the outputs must
/// be the same bits whatever the blocking (row pairs, column slices, row blocks on several threads), and within fp32
/// rounding of an fp64 product computed here.
/// </summary>
[TestClass]
public sealed class DeltaMathTests
{
    [TestMethod]
    [DataRow(1, 1, 1)]
    [DataRow(3, 7, 2)]
    [DataRow(5, 16, 16)]
    [DataRow(7, 19, 3)]
    [DataRow(33, 255, 8)]
    [DataRow(64, 256, 16)]
    [DataRow(65, 529, 16)]
    [DataRow(97, 1030, 17)]
    [DataRow(300, 4099, 16)]
    [DataRow(1, 5000, 64)]
    public void AddProduct_IsBitIdenticalToColumnAtATimeLoop(int rows, int cols, int k)
    {
        var rng = new Random((rows * 31) + (cols * 7) + k);
        float[] left = Values(rng, rows * k), right = Values(rng, k * cols), dst = Values(rng, rows * cols);
        float[] expected = (float[])dst.Clone();
        ColumnAtATime(expected, rows, cols, left, right, k, 0.375);

        DeltaMath.AddProduct(dst, rows, cols, left, right, k, 0.375);

        for (int i = 0; i < dst.Length; i++)
        {
            if (BitConverter.SingleToInt32Bits(dst[i]) != BitConverter.SingleToInt32Bits(expected[i]))
            {
                Assert.Fail($"[{rows}, {cols}] k {k}: element {i} (row {i / cols}, column {i % cols}) is {dst[i]:R}, the loop gives {expected[i]:R}");
            }
        }
    }

    [TestMethod]
    public void AddProduct_MatchesFp64ProductWithinOneRounding()
    {
        const int rows = 130, cols = 777, k = 16;
        var rng = new Random(5);
        float[] left = Values(rng, rows * k), right = Values(rng, k * cols), dst = Values(rng, rows * cols);
        float[] before = (float[])dst.Clone();

        DeltaMath.AddProduct(dst, rows, cols, left, right, k, -1.25);

        for (int i = 0; i < rows; i++)
        {
            for (int j = 0; j < cols; j++)
            {
                double sum = 0;
                for (int kk = 0; kk < k; kk++)
                {
                    sum += (double)left[(i * k) + kk] * right[(kk * cols) + j];
                }
                double exact = before[(i * cols) + j] + (-1.25 * sum);
                float got = dst[(i * cols) + j];
                Assert.IsTrue(Math.Abs(got - exact) <= Math.Max(Math.Abs(exact), 1e-30) * 1.2e-7, $"element ({i}, {j}): {got:R} vs fp64 {exact:R}");
            }
        }
    }

    private static void ColumnAtATime(float[] dst, int rows, int cols, float[] left, float[] right, int k, double factor)
    {
        for (int i = 0; i < rows; i++)
        {
            for (int j = 0; j < cols; j++)
            {
                double sum = 0;
                for (int kk = 0; kk < k; kk++)
                {
                    double a = left[(i * k) + kk], b = right[(kk * cols) + j];
                    sum = Fma.IsSupported ? Math.FusedMultiplyAdd(a, b, sum) : sum + (a * b);
                }
                dst[(i * cols) + j] = (float)(dst[(i * cols) + j] + (factor * sum));
            }
        }
    }

    private static float[] Values(Random rng, int n)
    {
        var v = new float[n];
        for (int i = 0; i < n; i++)
        {
            v[i] = (float)((rng.NextDouble() * 2) - 1);
        }
        return v;
    }
}
