using static TorchSharp.torch;

namespace OnnxLora.Merge.Internals;

/// <summary>Rank-k SVD factors of a dense matrix, computed in fp64 by TorchSharp's torch.linalg.svd on the CPU.</summary>
internal static class TruncatedSvd
{
    /// <summary>
    /// M [rows, cols] ≈ L [rows, k] · R [k, cols] with L = U_k·diag(S_k), R = Vhᵀ_k (PEFT's svd
    /// combination), k = min(rank, rows, cols).
    /// </summary>
    public static (float[] Left, float[] Right, int Rank) Factor(ReadOnlySpan<float> m, int rows, int cols, int rank)
    {
        int k = Math.Min(rank, Math.Min(rows, cols));
        var d = new double[m.Length];
        for (int i = 0; i < d.Length; i++)
        {
            d[i] = m[i];
        }
        using var scope = NewDisposeScope();
        var t = tensor(d, [rows, cols], ScalarType.Float64);
        var (u, s, vh) = linalg.svd(t, fullMatrices: false);
        var left = u.narrow(1, 0, k).mul(s.narrow(0, 0, k).unsqueeze(0)).contiguous();
        var right = vh.narrow(0, 0, k).contiguous();
        return (ToSingles(left), ToSingles(right), k);
    }

    private static float[] ToSingles(Tensor t)
    {
        var data = t.data<double>().ToArray();
        var f = new float[data.Length];
        for (int i = 0; i < f.Length; i++)
        {
            f[i] = (float)data[i];
        }
        return f;
    }
}
