namespace OnnxLora.Training.Data.Internals;

/// <summary>A padded batch as plain arrays, row-major [Rows, Columns].</summary>
/// <param name="InputIds">Token ids; padding positions hold the pad id.</param>
/// <param name="AttentionMask">1 for real tokens, 0 for padding.</param>
/// <param name="Labels">Class indices (classification) or null.</param>
/// <param name="Rows">Number of sequences.</param>
/// <param name="Columns">Length of the longest sequence (all rows are padded to it, on the right).</param>
/// <param name="Tokens">Number of real (non-padding) tokens.</param>
internal sealed record Batch(long[] InputIds, long[] AttentionMask, long[]? Labels, int Rows, int Columns, long Tokens)
{
    /// <summary>Positions a causal LM predicts: a real token whose predecessor is real (Σ (len − 1)).</summary>
    public long PredictedTokens
    {
        get
        {
            long count = 0;
            for (int r = 0; r < Rows; r++)
            {
                for (int c = 1; c < Columns; c++)
                {
                    count += AttentionMask[r * Columns + c];
                }
            }
            return count;
        }
    }
}

/// <summary>Deterministic splitting, epoch ordering and padding of examples.</summary>
internal static class Batching
{
    private const ulong SplitStream = 1;
    private const ulong EpochStream = 2;

    /// <summary>
    /// Splits into train and eval parts: a seeded shuffle picks round(n·fraction) eval examples (at
    /// least one when the fraction is positive and n ≥ 2, never all). Both parts keep file order.
    /// </summary>
    public static (List<TrainingExample> Train, List<TrainingExample> Eval) Split(IReadOnlyList<TrainingExample> examples, double evalFraction, int seed)
    {
        if (evalFraction is < 0 or >= 1 || double.IsNaN(evalFraction))
        {
            throw new ArgumentOutOfRangeException(nameof(evalFraction), evalFraction, "must be in [0, 1)");
        }
        int n = examples.Count;
        int evalCount = (int)Math.Round(n * evalFraction, MidpointRounding.AwayFromZero);
        if (evalFraction > 0 && n >= 2)
        {
            evalCount = Math.Clamp(evalCount, 1, n - 1);
        }
        else
        {
            evalCount = Math.Min(evalCount, Math.Max(0, n - 1));
        }
        var order = Enumerable.Range(0, n).ToArray();
        new DeterministicRandom(seed, SplitStream).Shuffle(order);
        var isEval = new bool[n];
        for (int i = 0; i < evalCount; i++)
        {
            isEval[order[i]] = true;
        }
        var train = new List<TrainingExample>(n - evalCount);
        var eval = new List<TrainingExample>(evalCount);
        for (int i = 0; i < n; i++)
        {
            (isEval[i] ? eval : train).Add(examples[i]);
        }
        return (train, eval);
    }

    /// <summary>The order examples are visited in epoch <paramref name="epoch"/>: a function of (seed, epoch) only.</summary>
    public static int[] EpochOrder(int count, int seed, int epoch)
    {
        var order = Enumerable.Range(0, count).ToArray();
        new DeterministicRandom(seed, EpochStream + (ulong)epoch * 0x10001UL).Shuffle(order);
        return order;
    }

    /// <summary>Pads <paramref name="examples"/> on the right to the longest one.</summary>
    public static Batch Collate(IReadOnlyList<TrainingExample> examples, int padId)
    {
        ArgumentOutOfRangeException.ThrowIfZero(examples.Count);
        int rows = examples.Count;
        int columns = examples.Max(e => e.InputIds.Count);
        var ids = new long[rows * columns];
        var mask = new long[rows * columns];
        long[]? labels = examples[0].Label is null ? null : new long[rows];
        long tokens = 0;
        for (int r = 0; r < rows; r++)
        {
            var e = examples[r];
            for (int c = 0; c < columns; c++)
            {
                bool real = c < e.InputIds.Count;
                ids[r * columns + c] = real ? e.InputIds[c] : padId;
                mask[r * columns + c] = real ? 1 : 0;
            }
            tokens += e.InputIds.Count;
            if (labels is not null)
            {
                labels[r] = e.Label ?? throw new ArgumentException("every example of a classification batch needs a label", nameof(examples));
            }
        }
        return new Batch(ids, mask, labels, rows, columns, tokens);
    }
}
