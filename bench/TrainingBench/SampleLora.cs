using System.Diagnostics;
using System.Globalization;
using OnnxLora.Core.Peft;
using OnnxLora.Training;
using OnnxLora.Training.Sample;

namespace OnnxLora.TrainingBench;

/// <summary>
/// <c>sample-lora --model DIR [--steps N] [--lr X] [--rank R] [--targets a,b] [--batch B]</c>: a LoRA
/// run on the sample's task.jsonl, printing the loss curve with wall time.
/// </summary>
internal static class SampleLora
{
    public static int Run(Dictionary<string, string> args)
    {
        string model = args["model"];
        var options = new TrainerOptions
        {
            Steps = Int(args, "steps", 60),
            LearningRate = Double(args, "lr", 2e-3),
            Lora = new PeftAdapterConfig
            {
                R = Int(args, "rank", 8),
                Alpha = Double(args, "alpha", 16),
                TargetModules = args.TryGetValue("targets", out string? t) ? TargetModules.FromList(t.Split(',')) : null,
            },
            BatchSize = Int(args, "batch", 8),
            WarmupSteps = Int(args, "warmup", 5),
            EvalEverySteps = Int(args, "eval-every", 20),
            Seed = Int(args, "seed", 42),
            Overwrite = true,
        };
        string output = args.TryGetValue("out", out string? o) ? o : Path.Combine(Path.GetTempPath(), "sample-lora-adapter");
        var clock = Stopwatch.StartNew();
        var result = Trainer.Train(model, Path.Combine(model, SampleGenerator.TaskFileName), output, options, new Printer(clock));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"done: {result.Steps} steps in {clock.Elapsed.TotalSeconds:F1} s wall; eval loss {result.InitialEvalLoss:F4} -> {result.EvalLoss:F4}; train loss first5 {result.LossHistory.Take(5).Average():F4} last5 {result.LossHistory.TakeLast(5).Average():F4}; {result.TokensPerSecond:F0} tokens/s; trainable {result.TrainableParameters} of {result.TotalParameters}"));
        return 0;
    }

    private static int Int(Dictionary<string, string> a, string k, int d) => a.TryGetValue(k, out string? v) ? int.Parse(v, CultureInfo.InvariantCulture) : d;

    private static double Double(Dictionary<string, string> a, string k, double d) => a.TryGetValue(k, out string? v) ? double.Parse(v, CultureInfo.InvariantCulture) : d;

    private sealed class Printer(Stopwatch clock) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress p)
        {
            if (p.EvalLoss is { } eval)
            {
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"[{clock.Elapsed.TotalSeconds,6:F1} s] step {p.Step,4}/{p.TotalSteps} eval loss {eval:F4}"));
            }
            if (!double.IsNaN(p.Loss) && (p.Step % 5 == 0 || p.Step == p.TotalSteps))
            {
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"[{clock.Elapsed.TotalSeconds,6:F1} s] step {p.Step,4}/{p.TotalSteps} loss {p.Loss:F4} lr {p.LearningRate:G3} grad-norm {p.GradNorm:F3} {p.TokensPerSecond:F0} tok/s"));
            }
        }
    }
}
