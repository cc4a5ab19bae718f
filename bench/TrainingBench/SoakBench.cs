using System.Diagnostics;
using OnnxLora.Training;
using OnnxLora.Training.Sample;

namespace OnnxLora.TrainingBench;

/// <summary>One RSS sample of the soak run.</summary>
internal sealed record SoakSample(int Step, long RssKiB, long ManagedBytes, long RetainedManagedBytes, long LiveTensors, double Loss, double Seconds);

/// <summary>A long LoRA run through <see cref="Trainer"/> on the sample, sampling RSS every 50 steps.</summary>
internal static class SoakBench
{
    public static (List<SoakSample> Samples, TrainingResult Result) Run(int steps, int threads, Action<string> log)
    {
        string root = Path.Combine(Path.GetTempPath(), "training-bench-soak-" + Guid.NewGuid().ToString("N"));
        try
        {
            string model = Path.Combine(root, "sample");
            SampleGenerator.WriteEmbedded(model);
            var samples = new List<SoakSample>();
            var clock = Stopwatch.StartNew();
            var progress = new Recorder(samples, clock, log);
            var options = new TrainerOptions
            {
                Steps = steps,
                BatchSize = 8,
                LearningRate = 1e-3,
                WarmupSteps = 20,
                EvalFraction = 0.1,
                Threads = threads,
                Seed = 3,
            };
            var result = Trainer.Train(model, Path.Combine(model, SampleGenerator.TaskFileName), Path.Combine(root, "adapter"), options, progress);
            return (samples, result);
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    private sealed class Recorder(List<SoakSample> samples, Stopwatch clock, Action<string> log) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress p)
        {
            if (double.IsNaN(p.Loss) || (p.Step % 50 != 0 && p.Step != 1))
            {
                return;
            }
            long rss = ProcessMemory.RssKiB();
            long managed = GC.GetTotalMemory(false);
            long retained = GC.GetTotalMemory(forceFullCollection: true);
            var s = new SoakSample(p.Step, rss, managed, retained, TorchSharp.DisposeScopeManager.Statistics.ThreadTotalLiveCount, p.Loss, clock.Elapsed.TotalSeconds);
            samples.Add(s);
            if (p.Step % 100 == 0)
            {
                log($"soak step {p.Step}: RSS {s.RssKiB / 1024.0:F1} MiB, managed {s.ManagedBytes / 1048576.0:F1} MiB (retained {s.RetainedManagedBytes / 1048576.0:F1}), live tensors {s.LiveTensors}, loss {p.Loss:F3}, {s.Seconds:F0} s");
            }
        }
    }
}
