using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace OnnxLora.Core.Peft;

/// <summary>
/// The merge formulas on plain row-major fp32 arrays: the only place ΔW is formed. Sums over the
/// rank run in fp64 and each destination element is rounded to fp32 once. Every function works in
/// the layout of the destination, so a weight stored transposed (fan_in_fan_out, embeddings) is
/// handled by passing transposed factors (see <see cref="Transpose"/>).
/// </summary>
public static class DeltaMath
{
    private const int ParallelThreshold = 1 << 16;

    /// <summary>
    /// dst[rows, cols] += factor · L[rows, k] · R[k, cols]. LoRA: L = B [out, r], R = A [r, in],
    /// factor = w·s (stored transposed: L = Aᵀ, R = Bᵀ).
    /// </summary>
    public static void AddProduct(Span<float> dst, int rows, int cols, ReadOnlySpan<float> left, ReadOnlySpan<float> right, int k, double factor)
    {
        CheckLengths(dst.Length, rows, cols, left.Length, right.Length, k);
        double[] r = ToDouble(right);
        double[] l = ToDouble(left);
        RunRows(dst, rows, cols, (row, span, _) => AddRowProduct(span, l, row * k, r, k, cols, factor));
    }

    /// <summary>
    /// dst += factor · (L1·R1) ⊙ (L2·R2), the LoHa update: L1 = w1a [out, r], R1 = w1b [r, in],
    /// L2 = w2a, R2 = w2b, factor = w·alpha/r.
    /// </summary>
    public static void AddHadamardOfProducts(Span<float> dst, int rows, int cols,
        ReadOnlySpan<float> left1, ReadOnlySpan<float> right1, int k1,
        ReadOnlySpan<float> left2, ReadOnlySpan<float> right2, int k2, double factor)
    {
        CheckLengths(dst.Length, rows, cols, left1.Length, right1.Length, k1);
        CheckLengths(dst.Length, rows, cols, left2.Length, right2.Length, k2);
        double[] r1 = ToDouble(right1), r2 = ToDouble(right2);
        float[] l1 = left1.ToArray(), l2 = left2.ToArray();
        RunRows(dst, rows, cols, (row, span, acc) =>
        {
            double[] acc2 = new double[cols];
            Accumulate(acc, l1.AsSpan(row * k1, k1), r1, cols);
            Accumulate(acc2, l2.AsSpan(row * k2, k2), r2, cols);
            for (int c = 0; c < cols; c++)
            {
                span[c] = (float)(span[c] + factor * acc[c] * acc2[c]);
            }
        });
    }

    /// <summary>
    /// dst[a·b, c·d] += factor · kron(w1 [a, c], w2 [b, d]), the LoKr update (factor = w·alpha/r).
    /// For a transposed destination pass w1ᵀ and w2ᵀ (kron(w1, w2)ᵀ = kron(w1ᵀ, w2ᵀ)).
    /// </summary>
    public static void AddKronecker(Span<float> dst, ReadOnlySpan<float> w1, int a, int c, ReadOnlySpan<float> w2, int b, int d, double factor)
    {
        if (w1.Length != a * c || w2.Length != b * d || dst.Length != (long)a * b * c * d)
        {
            throw new ArgumentException($"kron: w1 has {w1.Length} values for [{a}, {c}], w2 {w2.Length} for [{b}, {d}], destination {dst.Length} for [{a * b}, {c * d}]");
        }
        int cols = c * d;
        for (int i1 = 0; i1 < a; i1++)
        {
            for (int i2 = 0; i2 < b; i2++)
            {
                var row = dst.Slice((i1 * b + i2) * cols, cols);
                for (int j1 = 0; j1 < c; j1++)
                {
                    double f = factor * w1[i1 * c + j1];
                    var block = row.Slice(j1 * d, d);
                    var w2row = w2.Slice(i2 * d, d);
                    for (int j2 = 0; j2 < d; j2++)
                    {
                        block[j2] = (float)(block[j2] + f * w2row[j2]);
                    }
                }
            }
        }
    }

    /// <summary>
    /// DoRA: weight ← m ⊙ V / ‖V‖ with V = weight + delta and the norm taken over each output row
    /// (over each stored column when <paramref name="transposed"/>). delta already carries its
    /// scaling. Computed in fp64, rounded once.
    /// </summary>
    public static void ApplyDora(Span<float> weight, ReadOnlySpan<float> delta, ReadOnlySpan<float> magnitude, int outFeatures, int inFeatures, bool transposed)
    {
        long n = (long)outFeatures * inFeatures;
        if (weight.Length != n || delta.Length != n || magnitude.Length != outFeatures)
        {
            throw new ArgumentException($"DoRA: weight {weight.Length}, delta {delta.Length}, magnitude {magnitude.Length} values for [{outFeatures}, {inFeatures}]");
        }
        var sumSq = new double[outFeatures];
        for (long idx = 0; idx < n; idx++)
        {
            int o = transposed ? (int)(idx % outFeatures) : (int)(idx / inFeatures);
            double v = (double)weight[(int)idx] + delta[(int)idx];
            sumSq[o] += v * v;
        }
        var factor = new double[outFeatures];
        for (int o = 0; o < outFeatures; o++)
        {
            factor[o] = magnitude[o] / Math.Sqrt(sumSq[o]);
        }
        for (long idx = 0; idx < n; idx++)
        {
            int o = transposed ? (int)(idx % outFeatures) : (int)(idx / inFeatures);
            weight[(int)idx] = (float)(factor[o] * ((double)weight[(int)idx] + delta[(int)idx]));
        }
    }

    /// <summary>The transpose of a row-major [rows, cols] matrix.</summary>
    public static float[] Transpose(ReadOnlySpan<float> m, int rows, int cols)
    {
        if (m.Length != (long)rows * cols)
        {
            throw new ArgumentException($"transpose: {m.Length} values for [{rows}, {cols}]");
        }
        var t = new float[m.Length];
        // The cache-blocked transpose the exporter streams with (a naive loop misses the cache on every write for large matrices).
        Core.Internals.Transposer.Transpose(MemoryMarshal.AsBytes(m), MemoryMarshal.AsBytes(t.AsSpan()), rows, cols, sizeof(float));
        return t;
    }

    /// <summary>L [rows, k] · R [k, cols] (fp64 sums, one rounding): for small factors such as LoKr's w1_a·w1_b.</summary>
    public static float[] MatMul(ReadOnlySpan<float> left, ReadOnlySpan<float> right, int rows, int k, int cols)
    {
        var result = new float[checked(rows * cols)];
        AddProduct(result, rows, cols, left, right, k, 1.0);
        return result;
    }

    /// <summary>
    /// dst[c] = fp32(dst[c] + factor · Σ_kk L[row, kk]·R[kk, c]): columns in groups of four held in
    /// registers across the whole rank (fp64, fused multiply-add where the CPU has it), four groups at
    /// a time so the multiply-adds of independent columns overlap instead of waiting on each other.
    /// Every column's sum runs over kk in the same order with the same operations whatever the grouping,
    /// so results are bit-identical to a column-at-a-time loop.
    /// </summary>
    private static void AddRowProduct(Span<float> dst, double[] left, int leftOffset, double[] right, int k, int cols, double factor)
    {
        ref double l = ref MemoryMarshal.GetArrayDataReference(left);
        ref double r = ref MemoryMarshal.GetArrayDataReference(right);
        int c = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            for (; c <= cols - 16; c += 16)
            {
                Vector256<double> a0 = Vector256<double>.Zero, a1 = a0, a2 = a0, a3 = a0;
                for (int kk = 0; kk < k; kk++)
                {
                    var lv = Vector256.Create(Unsafe.Add(ref l, leftOffset + kk));
                    nuint at = (nuint)(((long)kk * cols) + c);
                    a0 = MultiplyAdd(lv, Vector256.LoadUnsafe(ref r, at), a0);
                    a1 = MultiplyAdd(lv, Vector256.LoadUnsafe(ref r, at + 4), a1);
                    a2 = MultiplyAdd(lv, Vector256.LoadUnsafe(ref r, at + 8), a2);
                    a3 = MultiplyAdd(lv, Vector256.LoadUnsafe(ref r, at + 12), a3);
                }
                AddScaled(dst.Slice(c, 4), a0, factor);
                AddScaled(dst.Slice(c + 4, 4), a1, factor);
                AddScaled(dst.Slice(c + 8, 4), a2, factor);
                AddScaled(dst.Slice(c + 12, 4), a3, factor);
            }
            for (; c <= cols - 4; c += 4)
            {
                var acc = Vector256<double>.Zero;
                for (int kk = 0; kk < k; kk++)
                {
                    var lv = Vector256.Create(Unsafe.Add(ref l, leftOffset + kk));
                    acc = MultiplyAdd(lv, Vector256.LoadUnsafe(ref r, (nuint)(((long)kk * cols) + c)), acc);
                }
                AddScaled(dst.Slice(c, 4), acc, factor);
            }
        }
        for (; c < cols; c++)
        {
            double sum = 0;
            for (int kk = 0; kk < k; kk++)
            {
                sum += Unsafe.Add(ref l, leftOffset + kk) * Unsafe.Add(ref r, (nint)(((long)kk * cols) + c));
            }
            dst[c] = (float)(dst[c] + (factor * sum));
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<double> MultiplyAdd(Vector256<double> a, Vector256<double> b, Vector256<double> acc) =>
        Fma.IsSupported ? Fma.MultiplyAdd(a, b, acc) : acc + (a * b);

    /// <summary>dst[i] = fp32(dst[i] + factor · sums[i]) for four elements, each operation as the scalar code does it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void AddScaled(Span<float> dst, Vector256<double> sums, double factor)
    {
        if (Avx.IsSupported && dst.Length >= 4)
        {
            // The scalar lines below, four at a time: widen, multiply then add (two roundings, no FMA), round to fp32 nearest-even.
            ref float d = ref MemoryMarshal.GetReference(dst);
            var widened = Avx.ConvertToVector256Double(Vector128.LoadUnsafe(ref d));
            Avx.ConvertToVector128Single(Avx.Add(widened, Avx.Multiply(Vector256.Create(factor), sums))).StoreUnsafe(ref d);
            return;
        }
        dst[0] = (float)(dst[0] + (factor * sums.GetElement(0)));
        dst[1] = (float)(dst[1] + (factor * sums.GetElement(1)));
        dst[2] = (float)(dst[2] + (factor * sums.GetElement(2)));
        dst[3] = (float)(dst[3] + (factor * sums.GetElement(3)));
    }

    private static void Accumulate(double[] acc, ReadOnlySpan<float> leftRow, double[] right, int cols)
    {
        Array.Clear(acc);
        int width = Vector<double>.Count;
        for (int kk = 0; kk < leftRow.Length; kk++)
        {
            double lv = leftRow[kk];
            if (lv == 0)
            {
                continue;
            }
            var rrow = right.AsSpan(kk * cols, cols);
            var lvec = new Vector<double>(lv);
            int c = 0;
            for (; c <= cols - width; c += width)
            {
                var sum = new Vector<double>(acc.AsSpan(c)) + lvec * new Vector<double>(rrow[c..]);
                sum.CopyTo(acc.AsSpan(c));
            }
            for (; c < cols; c++)
            {
                acc[c] += lv * rrow[c];
            }
        }
    }

    private delegate void RowAction(int row, Span<float> rowSpan, double[] acc);

    private static unsafe void RunRows(Span<float> dst, int rows, int cols, RowAction action)
    {
        if ((long)rows * cols < ParallelThreshold || Environment.ProcessorCount == 1)
        {
            var acc = new double[cols];
            for (int row = 0; row < rows; row++)
            {
                action(row, dst.Slice(row * cols, cols), acc);
            }
            return;
        }
        fixed (float* p = dst)
        {
            float* basePtr = p;
            Parallel.For(0, rows, () => new double[cols], (row, _, acc) =>
            {
                action(row, new Span<float>(basePtr + (long)row * cols, cols), acc);
                return acc;
            }, _ => { });
        }
    }

    private static double[] ToDouble(ReadOnlySpan<float> values)
    {
        var d = new double[values.Length];
        for (int i = 0; i < values.Length; i++)
        {
            d[i] = values[i];
        }
        return d;
    }

    private static void CheckLengths(int dst, int rows, int cols, int left, int right, int k)
    {
        if (dst != (long)rows * cols || left != (long)rows * k || right != (long)k * cols)
        {
            throw new ArgumentException($"product: destination {dst} values for [{rows}, {cols}], left {left} for [{rows}, {k}], right {right} for [{k}, {cols}]");
        }
    }
}
