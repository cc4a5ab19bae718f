using OnnxLora.Core;
using OnnxLora.Training.Data.Internals;

namespace OnnxLora.Training.TrainerInternals;

/// <summary>
/// Which training examples each optimizer step uses. Micro-batches run through epochs in a seeded
/// order that depends only on (seed, epoch); step s takes micro-batches s·k … s·k + k − 1 (k = gradient
/// accumulation), so any step's data is known without replaying the steps before it.
/// </summary>
internal sealed class StepPlan
{
    private readonly int _trainCount;
    private readonly int _batchSize;
    private readonly int _accumulation;
    private readonly int _seed;
    private int _cachedEpoch = -1;
    private int[] _cachedOrder = [];

    public StepPlan(int trainCount, TrainerOptions options)
    {
        if (trainCount <= 0)
        {
            throw OnnxLoraException.InvalidOption("TrainerOptions.EvalFraction", "the training split is empty; lower EvalFraction or add data");
        }
        _trainCount = trainCount;
        _batchSize = options.BatchSize;
        _accumulation = options.GradientAccumulation;
        _seed = options.Seed;
        MicroPerEpoch = (trainCount + _batchSize - 1) / _batchSize;
        TotalMicroBatches = options.Steps is int steps ? (long)steps * _accumulation : (long)options.Epochs * MicroPerEpoch;
        TotalSteps = options.Steps ?? checked((int)((TotalMicroBatches + _accumulation - 1) / _accumulation));
    }

    public int MicroPerEpoch { get; }

    public long TotalMicroBatches { get; }

    public int TotalSteps { get; }

    /// <summary>Example indices of each micro-batch of optimizer step <paramref name="step"/>.</summary>
    public List<int[]> MicroBatches(int step)
    {
        var result = new List<int[]>(_accumulation);
        long first = (long)step * _accumulation;
        long end = Math.Min(first + _accumulation, TotalMicroBatches);
        for (long m = first; m < end; m++)
        {
            int epoch = checked((int)(m / MicroPerEpoch));
            int position = (int)(m % MicroPerEpoch);
            if (epoch != _cachedEpoch)
            {
                _cachedOrder = Batching.EpochOrder(_trainCount, _seed, epoch);
                _cachedEpoch = epoch;
            }
            int start = position * _batchSize;
            int count = Math.Min(_batchSize, _trainCount - start);
            result.Add(_cachedOrder.AsSpan(start, count).ToArray());
        }
        return result;
    }

    /// <summary>Epochs completed after <paramref name="steps"/> optimizer steps, fractional.</summary>
    public double EpochAt(int steps) => Math.Min((long)steps * _accumulation, TotalMicroBatches) / (double)MicroPerEpoch;
}
