namespace OnnxLora.Training;

/// <summary>One report from a running <see cref="Trainer"/>: sent after every optimizer step and after each evaluation.</summary>
/// <param name="Step">Optimizer steps done (1-based once training has started; 0 for the evaluation before the first step).</param>
/// <param name="TotalSteps">Optimizer steps the run will make.</param>
/// <param name="Epoch">Passes over the training split so far, fractional.</param>
/// <param name="Loss">Mean training loss of this step (per predicted token, or per example for classification); NaN in an evaluation-only report.</param>
/// <param name="LearningRate">Learning rate used by this step.</param>
/// <param name="TokensPerSecond">Real (non-padding) tokens processed per second in this step, forward and backward.</param>
/// <param name="GradNorm">Global gradient L2 norm before clipping.</param>
/// <param name="EvalLoss">Mean loss on the held-out split, when this report follows an evaluation; otherwise null.</param>
/// <param name="Elapsed">Wall time since training started.</param>
public sealed record TrainingProgress(
    int Step,
    int TotalSteps,
    double Epoch,
    double Loss,
    double LearningRate,
    double TokensPerSecond,
    double GradNorm,
    double? EvalLoss,
    TimeSpan Elapsed)
{
    /// <summary>Classification: held-out accuracy when this report follows an evaluation; otherwise null.</summary>
    public double? EvalAccuracy { get; init; }
}
