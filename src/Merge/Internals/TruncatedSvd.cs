using MathNet.Numerics.LinearAlgebra;

namespace OnnxLora.Merge.Internals;

/// <summary>
/// Rank-k SVD factors of a dense matrix in fp64, with Math.NET Numerics' SVD (managed; no native
/// backend, so merging files never loads libtorch).
/// </summary>
internal static class TruncatedSvd
{
    /// <summary>
    /// M [rows, cols] ≈ L [rows, k] · R [k, cols] with L = U_k·diag(S_k), R = Vhᵀ_k, k = min(rank, rows,
    /// cols): PEFT's <c>_svd_generalized_task_arithmetic_weighted_adapter</c> (U·diag(S) becomes lora_B,
    /// Vh lora_A; no clamping, svd_clamp = None).
    /// </summary>
    public static (double[] Left, double[] Right, int Rank) Factor(double[] m, int rows, int cols, int rank)
    {
        int k = Math.Min(rank, Math.Min(rows, cols));
        var matrix = Matrix<double>.Build.Dense(rows, cols, (i, j) => m[(i * cols) + j]);
        var svd = matrix.Svd(computeVectors: true);
        var u = svd.U;
        var s = svd.S;
        var vt = svd.VT;
        var left = new double[rows * k];
        var right = new double[k * cols];
        for (int i = 0; i < rows; i++)
        {
            for (int j = 0; j < k; j++)
            {
                left[(i * k) + j] = u[i, j] * s[j];
            }
        }
        for (int j = 0; j < k; j++)
        {
            for (int c = 0; c < cols; c++)
            {
                right[(j * cols) + c] = vt[j, c];
            }
        }
        return (left, right, k);
    }
}
