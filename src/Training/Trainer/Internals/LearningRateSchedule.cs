namespace OnnxLora.Training.TrainerInternals;

/// <summary>
/// Linear warm-up then cosine decay to zero, as Hugging Face's <c>get_cosine_schedule_with_warmup</c>
/// (one half cosine): optimizer step s (0-based) of T uses the base rate times
/// s / W while s &lt; W, then ½·(1 + cos(π·(s − W) / (T − W))).
/// </summary>
internal static class LearningRateSchedule
{
    public static double Factor(int step, int warmupSteps, int totalSteps)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(step);
        ArgumentOutOfRangeException.ThrowIfNegative(warmupSteps);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(totalSteps);
        if (step < warmupSteps)
        {
            return (double)step / Math.Max(1, warmupSteps);
        }
        double progress = (double)(step - warmupSteps) / Math.Max(1, totalSteps - warmupSteps);
        return Math.Max(0.0, 0.5 * (1.0 + Math.Cos(Math.PI * progress)));
    }
}
