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

    /// <summary>Rows per work item of <see cref="AddProduct"/>, and the columns of R each pass over those rows reuses.</summary>
    private const int RowBlock = 32, ColumnBlock = 256;

    /// <summary>
    /// dst[rows, cols] += factor · L[rows, k] · R[k, cols]. LoRA: L = B [out, r], R = A [r, in],
    /// factor = w·s (stored transposed: L = Aᵀ, R = Bᵀ).
    /// </summary>
    public static void AddProduct(Span<float> dst, int rows, int cols, ReadOnlySpan<float> left, ReadOnlySpan<float> right, int k, double factor)
    {
        CheckLengths(dst.Length, rows, cols, left.Length, right.Length, k);
        new Product(left, right, rows, cols, k, factor).Add(dst);
    }

    /// <summary>
    /// factor · L[rows, k] · R[k, cols] prepared once (factors in fp64, R tile-packed) and added to the destination a block of
    /// rows at a time (<see cref="AddRows"/>), by <see cref="AddProduct"/> on all cores or by a caller that streams a tensor
    /// through the cache row block by row block. Any blocking gives the same bits (see <see cref="AddBlockProduct"/>).
    /// </summary>
    public sealed class Product
    {
        private readonly double[] _left, _right;
        private readonly PackedRight _packed;
        private readonly int _k;
        private readonly double _factor;

        public Product(ReadOnlySpan<float> left, ReadOnlySpan<float> right, int rows, int cols, int k, double factor)
        {
            CheckLengths(checked(rows * cols), rows, cols, left.Length, right.Length, k);
            Rows = rows;
            Cols = cols;
            _k = k;
            _factor = factor;
            _left = ToDouble(left);
            _right = ToDouble(right);
            _packed = new PackedRight(_right, k, cols);
        }

        public int Rows { get; }

        public int Cols { get; }

        /// <summary>dst [rows, cols] += factor · L · R, row blocks on all cores when it is large enough to pay for it.</summary>
        public void Add(Span<float> dst)
        {
            CheckLengths(dst.Length, Rows, Cols, _left.Length, _right.Length, _k);
            RunRowBlocks(dst, Rows, Cols, (firstRow, block) => AddRows(block, firstRow));
        }

        /// <summary>dst (whole rows firstRow, firstRow + 1, …, row-major) += factor · L[those rows] · R, on this thread.</summary>
        public void AddRows(Span<float> dst, int firstRow)
        {
            int count = Cols == 0 ? 0 : dst.Length / Cols;
            if (dst.Length != (long)count * Cols || firstRow < 0 || firstRow + count > Rows)
            {
                throw new ArgumentException($"product: {dst.Length} values from row {firstRow} are not whole rows of [{Rows}, {Cols}]", nameof(dst));
            }
            AddBlockProduct(dst, firstRow, count, Cols, _left, _right, _packed, _k, _factor);
        }
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
    /// dst[row, c] = fp32(dst[row, c] + factor · Σ_kk L[firstRow + row, kk]·R[kk, c]) for a block of rows. Each column's sum
    /// runs over kk in order from zero in fp64 (fused multiply-add where the CPU has it, as one vector lane), then one
    /// multiply and one add, rounded to fp32 once. That per-element sequence is fixed whatever the blocking, the vector width
    /// and wherever the element sits (so a transposed destination with transposed factors gives the same bits as the plain
    /// layout), so results are bit-identical to a column-at-a-time loop of the same operations. The blocking is for speed
    /// only: the columns that fill whole tiles (<see cref="PackedRight"/>: four vectors wide, 16 columns with 256-bit vectors,
    /// 32 with 512-bit ones) read R from its packed copy, walked in slices of <see cref="ColumnBlock"/> columns that every row
    /// of the block reuses, two rows sharing each load, a tile's four vectors per row held in registers across the whole rank;
    /// the last cols mod tile columns go through <see cref="AddOneRow"/> on the row-major R.
    /// </summary>
    // Fully optimised from the first call: a tier-0 body of this loop (what tiered compilation runs first) calls every vector
    // intrinsic as a function and showed up in profiles of short merges.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void AddBlockProduct(Span<float> block, int firstRow, int count, int cols, double[] left, double[] right,
        PackedRight packed, int k, double factor)
    {
        int tiled = packed.Tiles * packed.Width;
        float* scratch = stackalloc float[ColumnBlock];
        fixed (float* dstBase = block)
        fixed (double* l = left, r = right, p = packed.Values)
        {
            for (int c0 = 0; c0 < tiled; c0 += ColumnBlock)
            {
                int firstTile = c0 / packed.Width, endTile = Math.Min(tiled, c0 + ColumnBlock) / packed.Width;
                int row = 0;
                for (; row + 1 < count; row += 2)
                {
                    float* dst0 = dstBase + ((long)row * cols), dst1 = dst0 + cols;
                    double* l0 = l + ((long)(firstRow + row) * k), l1 = l0 + k;
                    if (packed.Width == 32)
                    {
                        AddTiles512(dst0, dst1, l0, l1, p, k, firstTile, endTile, factor);
                    }
                    else
                    {
                        AddTiles256(dst0, dst1, l0, l1, p, k, firstTile, endTile, factor);
                    }
                }
                if (row < count)
                {
                    // An odd last row: the two-row kernel with the row as both, its second result discarded into scratch.
                    float* dst = dstBase + ((long)row * cols);
                    double* l0 = l + ((long)(firstRow + row) * k);
                    if (packed.Width == 32)
                    {
                        AddTiles512(dst, scratch - c0, l0, l0, p, k, firstTile, endTile, factor);
                    }
                    else
                    {
                        AddTiles256(dst, scratch - c0, l0, l0, p, k, firstTile, endTile, factor);
                    }
                }
            }
            if (tiled < cols)
            {
                for (int row = 0; row < count; row++)
                {
                    AddOneRow(dstBase + ((long)row * cols), l + ((long)(firstRow + row) * k), r, k, cols, tiled, cols, factor);
                }
            }
        }
    }

    /// <summary>
    /// R [k, cols] repacked tile by tile: tile t holds columns [t·Width, (t + 1)·Width) of every row kk, rows one after the
    /// other (Values[(t·k + kk)·Width + j] = R[kk, t·Width + j]), so the rank loop reads one contiguous run instead of k
    /// loads a whole row of R apart (a power-of-two row length puts those k lines in one cache set, which holds fewer).
    /// Width is four vectors of doubles (16 or 32 columns), or no tiles without 256-bit vectors.
    /// </summary>
    private sealed class PackedRight
    {
        public PackedRight(double[] right, int k, int cols)
        {
            Width = Vector512.IsHardwareAccelerated && Avx512F.IsSupported ? 32 : Vector256.IsHardwareAccelerated ? 16 : 0;
            Tiles = Width == 0 ? 0 : cols / Width;
            Values = new double[(long)Tiles * Width * k];
            for (int t = 0; t < Tiles; t++)
            {
                for (int kk = 0; kk < k; kk++)
                {
                    Array.Copy(right, ((long)kk * cols) + ((long)t * Width), Values, ((long)t * k + kk) * Width, Width);
                }
            }
        }

        public int Width { get; }

        public int Tiles { get; }

        public double[] Values { get; }
    }

    /// <summary>Tiles [firstTile, endTile) of two rows, 16 columns per tile as four 256-bit vectors (see <see cref="AddBlockProduct"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void AddTiles256(float* dst0, float* dst1, double* l0, double* l1, double* packed, int k, int firstTile, int endTile, double factor)
    {
        for (int t = firstTile; t < endTile; t++)
        {
            Vector256<double> a0 = Vector256<double>.Zero, a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
            double* at = packed + ((long)t * k * 16);
            for (int kk = 0; kk < k; kk++, at += 16)
            {
                var r0 = Vector256.Load(at);
                var r1 = Vector256.Load(at + 4);
                var r2 = Vector256.Load(at + 8);
                var r3 = Vector256.Load(at + 12);
                var x = Vector256.Create(l0[kk]);
                var y = Vector256.Create(l1[kk]);
                a0 = MultiplyAdd(x, r0, a0);
                a1 = MultiplyAdd(x, r1, a1);
                a2 = MultiplyAdd(x, r2, a2);
                a3 = MultiplyAdd(x, r3, a3);
                b0 = MultiplyAdd(y, r0, b0);
                b1 = MultiplyAdd(y, r1, b1);
                b2 = MultiplyAdd(y, r2, b2);
                b3 = MultiplyAdd(y, r3, b3);
            }
            int c = t * 16;
            AddScaled(dst0 + c, a0, factor);
            AddScaled(dst0 + c + 4, a1, factor);
            AddScaled(dst0 + c + 8, a2, factor);
            AddScaled(dst0 + c + 12, a3, factor);
            AddScaled(dst1 + c, b0, factor);
            AddScaled(dst1 + c + 4, b1, factor);
            AddScaled(dst1 + c + 8, b2, factor);
            AddScaled(dst1 + c + 12, b3, factor);
        }
    }

    /// <summary>Tiles [firstTile, endTile) of two rows, 32 columns per tile as four 512-bit vectors (see <see cref="AddBlockProduct"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void AddTiles512(float* dst0, float* dst1, double* l0, double* l1, double* packed, int k, int firstTile, int endTile, double factor)
    {
        for (int t = firstTile; t < endTile; t++)
        {
            Vector512<double> a0 = Vector512<double>.Zero, a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
            double* at = packed + ((long)t * k * 32);
            for (int kk = 0; kk < k; kk++, at += 32)
            {
                var r0 = Vector512.Load(at);
                var r1 = Vector512.Load(at + 8);
                var r2 = Vector512.Load(at + 16);
                var r3 = Vector512.Load(at + 24);
                var x = Vector512.Create(l0[kk]);
                var y = Vector512.Create(l1[kk]);
                a0 = Avx512F.FusedMultiplyAdd(x, r0, a0);
                a1 = Avx512F.FusedMultiplyAdd(x, r1, a1);
                a2 = Avx512F.FusedMultiplyAdd(x, r2, a2);
                a3 = Avx512F.FusedMultiplyAdd(x, r3, a3);
                b0 = Avx512F.FusedMultiplyAdd(y, r0, b0);
                b1 = Avx512F.FusedMultiplyAdd(y, r1, b1);
                b2 = Avx512F.FusedMultiplyAdd(y, r2, b2);
                b3 = Avx512F.FusedMultiplyAdd(y, r3, b3);
            }
            int c = t * 32;
            AddScaled512(dst0 + c, a0, factor);
            AddScaled512(dst0 + c + 8, a1, factor);
            AddScaled512(dst0 + c + 16, a2, factor);
            AddScaled512(dst0 + c + 24, a3, factor);
            AddScaled512(dst1 + c, b0, factor);
            AddScaled512(dst1 + c + 8, b1, factor);
            AddScaled512(dst1 + c + 16, b2, factor);
            AddScaled512(dst1 + c + 24, b3, factor);
        }
    }

    /// <summary>Columns [c0, end) of one row: 16, then 4 columns per vector group where vectors run, the rest scalar.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void AddOneRow(float* dst, double* l, double* r, int k, int cols, int c0, int end, double factor)
    {
        int c = c0;
        if (Vector256.IsHardwareAccelerated)
        {
            for (; c <= end - 16; c += 16)
            {
                Vector256<double> a0 = Vector256<double>.Zero, a1 = a0, a2 = a0, a3 = a0;
                double* at = r + c;
                for (int kk = 0; kk < k; kk++, at += cols)
                {
                    var x = Vector256.Create(l[kk]);
                    a0 = MultiplyAdd(x, Vector256.Load(at), a0);
                    a1 = MultiplyAdd(x, Vector256.Load(at + 4), a1);
                    a2 = MultiplyAdd(x, Vector256.Load(at + 8), a2);
                    a3 = MultiplyAdd(x, Vector256.Load(at + 12), a3);
                }
                AddScaled(dst + c, a0, factor);
                AddScaled(dst + c + 4, a1, factor);
                AddScaled(dst + c + 8, a2, factor);
                AddScaled(dst + c + 12, a3, factor);
            }
            for (; c <= end - 4; c += 4)
            {
                var acc = Vector256<double>.Zero;
                double* at = r + c;
                for (int kk = 0; kk < k; kk++, at += cols)
                {
                    acc = MultiplyAdd(Vector256.Create(l[kk]), Vector256.Load(at), acc);
                }
                AddScaled(dst + c, acc, factor);
            }
        }
        for (; c < end; c++)
        {
            double sum = 0;
            for (int kk = 0; kk < k; kk++)
            {
                // Fused where the vector lanes fuse, so every element's sum is the same operations wherever it sits in a row
                // (a transposed destination puts it elsewhere).
                sum = Fma.IsSupported ? Math.FusedMultiplyAdd(l[kk], r[((long)kk * cols) + c], sum) : sum + (l[kk] * r[((long)kk * cols) + c]);
            }
            dst[c] = (float)(dst[c] + (factor * sum));
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<double> MultiplyAdd(Vector256<double> a, Vector256<double> b, Vector256<double> acc) =>
        Fma.IsSupported ? Fma.MultiplyAdd(a, b, acc) : acc + (a * b);

    /// <summary>dst[i] = fp32(dst[i] + factor · sums[i]) for four elements, each operation as the scalar code does it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void AddScaled(float* dst, Vector256<double> sums, double factor)
    {
        if (Avx.IsSupported)
        {
            // The scalar lines below, four at a time: widen, multiply then add (two roundings, no FMA), round to fp32 nearest-even.
            var widened = Avx.ConvertToVector256Double(Vector128.Load(dst));
            Avx.ConvertToVector128Single(Avx.Add(widened, Avx.Multiply(Vector256.Create(factor), sums))).Store(dst);
            return;
        }
        dst[0] = (float)(dst[0] + (factor * sums.GetElement(0)));
        dst[1] = (float)(dst[1] + (factor * sums.GetElement(1)));
        dst[2] = (float)(dst[2] + (factor * sums.GetElement(2)));
        dst[3] = (float)(dst[3] + (factor * sums.GetElement(3)));
    }

    /// <summary><see cref="AddScaled"/> for eight elements: widen, multiply then add (no FMA), round to fp32 nearest-even.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void AddScaled512(float* dst, Vector512<double> sums, double factor)
    {
        var widened = Avx512F.ConvertToVector512Double(Vector256.Load(dst));
        Avx512F.ConvertToVector256Single(Avx512F.Add(widened, Avx512F.Multiply(Vector512.Create(factor), sums))).Store(dst);
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

    /// <summary>
    /// Runs <paramref name="action"/>(first row, rows) over blocks of <see cref="RowBlock"/> rows, on all cores when the product is
    /// large enough to pay for it (a block per work item: each reuses a slice of R across its rows).
    /// </summary>
    private static unsafe void RunRowBlocks(Span<float> dst, int rows, int cols, BlockAction action)
    {
        int blocks = (rows + RowBlock - 1) / RowBlock;
        if ((long)rows * cols < ParallelThreshold || Environment.ProcessorCount == 1 || blocks == 1)
        {
            action(0, dst);
            return;
        }
        fixed (float* p = dst)
        {
            float* basePtr = p;
            Parallel.For(0, blocks, b =>
            {
                int first = b * RowBlock, count = Math.Min(RowBlock, rows - first);
                action(first, new Span<float>(basePtr + ((long)first * cols), count * cols));
            });
        }
    }

    private delegate void BlockAction(int firstRow, Span<float> rows);

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
