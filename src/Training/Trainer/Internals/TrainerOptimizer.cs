using TorchSharp.Modules;

namespace OnnxLora.Training.TrainerInternals;

/// <summary>
/// The optimizer of a run: AdamW with PyTorch's defaults written out (TorchSharp's factory defaults
/// differ: beta2 0.99 and weight decay 0).
/// </summary>
internal static class TrainerOptimizer
{
    public const double Beta1 = 0.9;
    public const double Beta2 = 0.999;
    public const double Epsilon = 1e-8;

    public static AdamW Create(IEnumerable<Parameter> parameters, TrainerOptions options) =>
        new ScopedAdamW(parameters, lr: options.LearningRate, beta1: Beta1, beta2: Beta2, eps: Epsilon, weightDecay: options.WeightDecay);

    /// <summary>Sets the learning rate of every parameter group.</summary>
    public static void SetLearningRate(AdamW optimizer, double lr)
    {
        foreach (var group in optimizer.ParamGroups)
        {
            group.LearningRate = lr;
        }
    }
}
