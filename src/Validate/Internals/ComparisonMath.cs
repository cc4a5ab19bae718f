using OnnxLora.Core;

namespace OnnxLora.Validate.Internals;

/// <summary>Error metrics of one output pair, accumulated in double precision.</summary>
internal static class ComparisonMath
{
    public static OutputComparison Compare(
        string name, long[] shape, DType actualType, DType referenceType,
        ReadOnlySpan<float> actual, ReadOnlySpan<float> reference, double atol, double rtol, bool top1)
    {
        if (actual.Length != reference.Length)
        {
            throw new ArgumentException($"output {name}: {actual.Length} actual values but {reference.Length} reference values.");
        }
        long n = actual.Length;
        long nonFiniteA = 0, nonFiniteR = 0, beyond = 0, finitePairs = 0;
        double maxAbs = 0, maxRel = 0, sumSq = 0, dot = 0, normA = 0, normR = 0, refMax = 0;
        long worst = -1;
        for (int i = 0; i < actual.Length; i++)
        {
            double a = actual[i], r = reference[i];
            bool finiteA = double.IsFinite(a), finiteR = double.IsFinite(r);
            if (!finiteA)
            {
                nonFiniteA++;
            }
            if (!finiteR)
            {
                nonFiniteR++;
            }
            if (!finiteA || !finiteR)
            {
                beyond++;
                continue;
            }
            finitePairs++;
            double diff = Math.Abs(a - r);
            double absR = Math.Abs(r);
            if (diff > maxAbs)
            {
                maxAbs = diff;
                worst = i;
            }
            double rel = diff / Math.Max(absR, OutputComparison.RelativeErrorFloor);
            if (rel > maxRel)
            {
                maxRel = rel;
            }
            if (diff > atol + rtol * absR)
            {
                beyond++;
            }
            sumSq += diff * diff;
            dot += a * r;
            normA += a * a;
            normR += r * r;
            refMax = Math.Max(refMax, absR);
        }
        double cosine = normA == 0 && normR == 0 ? 1.0
            : normA == 0 || normR == 0 ? 0.0
            : dot / (Math.Sqrt(normA) * Math.Sqrt(normR));
        (double Share, long Positions)? agreement = top1 && shape.Length >= 2 && shape[^1] > 0
            ? Top1(actual, reference, (int)shape[^1]) : null;
        return new OutputComparison
        {
            Name = name,
            Shape = shape,
            ActualType = actualType,
            ReferenceType = referenceType,
            Elements = n,
            MaxAbsError = maxAbs,
            MaxRelError = maxRel,
            RmsError = finitePairs == 0 ? 0 : Math.Sqrt(sumSq / finitePairs),
            CosineSimilarity = cosine,
            ReferenceMaxAbs = refMax,
            BeyondTolerance = beyond,
            NonFiniteActual = nonFiniteA,
            NonFiniteReference = nonFiniteR,
            WorstIndex = worst >= 0 ? Unravel(worst, shape) : null,
            WorstActual = worst >= 0 ? actual[(int)worst] : null,
            WorstReference = worst >= 0 ? reference[(int)worst] : null,
            Top1Agreement = agreement?.Share,
            Top1Positions = agreement?.Positions,
        };
    }

    /// <summary>Share of rows (of length <paramref name="classes"/>) whose first argmax agrees.</summary>
    internal static (double Share, long Positions) Top1(ReadOnlySpan<float> actual, ReadOnlySpan<float> reference, int classes)
    {
        long positions = actual.Length / classes;
        if (positions == 0)
        {
            return (1.0, 0);
        }
        long agree = 0;
        for (long p = 0; p < positions; p++)
        {
            int start = (int)(p * classes);
            if (ArgMax(actual.Slice(start, classes)) == ArgMax(reference.Slice(start, classes)))
            {
                agree++;
            }
        }
        return ((double)agree / positions, positions);
    }

    /// <summary>Index of the first largest value; NaN never wins (-1 when every value is NaN).</summary>
    internal static int ArgMax(ReadOnlySpan<float> row)
    {
        int best = -1;
        float bestValue = float.NegativeInfinity;
        for (int i = 0; i < row.Length; i++)
        {
            if (float.IsNaN(row[i]))
            {
                continue;
            }
            if (best < 0 || row[i] > bestValue)
            {
                best = i;
                bestValue = row[i];
            }
        }
        return best;
    }

    internal static long[] Unravel(long flat, long[] shape)
    {
        var index = new long[shape.Length];
        for (int d = shape.Length - 1; d >= 0; d--)
        {
            if (shape[d] == 0)
            {
                break;
            }
            index[d] = flat % shape[d];
            flat /= shape[d];
        }
        return index;
    }
}
