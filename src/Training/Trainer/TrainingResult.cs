namespace OnnxLora.Training;

/// <summary>What a finished <see cref="Trainer"/> run did.</summary>
/// <param name="AdapterDirectory">The PEFT adapter folder written (adapter_config.json + adapter_model.safetensors).</param>
/// <param name="Steps">Optimizer steps made in total (including steps done before a resume).</param>
/// <param name="FinalLoss">Training loss of the last step.</param>
/// <param name="InitialEvalLoss">Held-out loss before the first step of this run (null without a held-out split).</param>
/// <param name="EvalLoss">Held-out loss after the last step (null without a held-out split).</param>
/// <param name="LossHistory">Training loss of every step this run made, in order.</param>
/// <param name="TokensPerSecond">Real tokens per second over this run's training steps (forward + backward + update).</param>
/// <param name="TrainableParameters">Number of parameters the optimizer updated.</param>
/// <param name="TotalParameters">Number of parameters of the model with its adapter.</param>
/// <param name="Elapsed">Wall time of this run.</param>
public sealed record TrainingResult(
    string AdapterDirectory,
    int Steps,
    double FinalLoss,
    double? InitialEvalLoss,
    double? EvalLoss,
    IReadOnlyList<double> LossHistory,
    double TokensPerSecond,
    long TrainableParameters,
    long TotalParameters,
    TimeSpan Elapsed)
{
    /// <summary>Classification: held-out accuracy (examples whose top logit is the label) before the first step; null otherwise.</summary>
    public double? InitialEvalAccuracy { get; init; }

    /// <summary>Classification: held-out accuracy after the last step; null otherwise.</summary>
    public double? EvalAccuracy { get; init; }
}
