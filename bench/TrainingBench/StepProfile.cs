using System.Globalization;
using System.Runtime.InteropServices;
using OnnxLora.Core.Peft;
using OnnxLora.Models.Llama;
using OnnxLora.Models.Lora;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace OnnxLora.TrainingBench;

/// <summary>
/// <c>profile [--size 256|512] [--steps N]</c>: the phases of a LoRA step on a <see cref="VersusBench"/>
/// size, timed one by one in process CPU time (forward, backward, clipping, optimizer step, zero_grad, scope disposal), with the
/// same model, LoRA and optimizer settings as the trainer, one thread. Prints the median ms per phase.
/// </summary>
internal static class StepProfile
{
    public static int Run(Dictionary<string, string> args)
    {
        set_num_threads(1);
        string sizeName = args.TryGetValue("size", out string? s) ? s : "256";
        var size = VersusBench.Sizes.Single(z => z.Name == sizeName);
        int steps = Program.Int(args, "steps", 8);
        using var model = LlamaForCausalLM.CreateRandom(size.Config(), seed: 11);
        LoraInjection.Apply(model, new PeftAdapterConfig { R = VersusBench.Rank, Alpha = VersusBench.Alpha, TargetModules = TargetModules.FromList(VersusBench.Targets) }, 42);
        var trainable = LoraInjection.TrainableParameters(model).Select(p => p.Parameter).ToList();
        model.train();
        using var optimizer = new AdamW(trainable, lr: VersusBench.LearningRate, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01);
        using var generator = new Generator(7);
        using var ids = randint(3, size.Vocab, [VersusBench.Batch, size.Seq], ScalarType.Int64, generator: generator);
        using var mask = ones(VersusBench.Batch, size.Seq, ScalarType.Int64);
        string[] phases = ["forward", "loss", "backward", "clip", "step", "zero_grad", "dispose", "total"];
        var times = phases.ToDictionary(p => p, _ => new List<double>());
        for (int i = 0; i < steps; i++)
        {
            double start = CpuMs();
            double t = start;
            void Mark(string phase)
            {
                double now = CpuMs();
                times[phase].Add(now - t);
                t = now;
            }
            using (var scope = NewDisposeScope())
            {
                var logits = model.call(ids, mask);
                Mark("forward");
                long seq = size.Seq;
                var loss = nn.functional.cross_entropy(logits.narrow(1, 0, seq - 1).reshape(-1, size.Vocab), ids.narrow(1, 1, seq - 1).reshape(-1));
                Mark("loss");
                loss.backward();
                Mark("backward");
                nn.utils.clip_grad_norm_(trainable, 1.0);
                Mark("clip");
                optimizer.step();
                Mark("step");
                optimizer.zero_grad();
                Mark("zero_grad");
            }
            Mark("dispose");
            times["total"].Add(CpuMs() - start);
        }
        foreach (string p in phases)
        {
            var kept = times[p].Skip(1).ToList();
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{p,-10} median {Stats.Median(kept),8:F1} CPU ms  min {kept.Min(),8:F1}  max {kept.Max(),8:F1}"));
        }
        return 0;
    }

    /// <summary>CPU time of this process (all threads) in ms, from clock_gettime(CLOCK_PROCESS_CPUTIME_ID): ns resolution, unlike /proc's ticks.</summary>
    public static double CpuMs()
    {
        ClockGetTime(ProcessCpuTimeClock, out var ts);
        return ts.Seconds * 1e3 + ts.Nanoseconds / 1e6;
    }

    private const int ProcessCpuTimeClock = 2;

    [StructLayout(LayoutKind.Sequential)]
    private struct TimeSpec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    [DllImport("libc", EntryPoint = "clock_gettime")]
    private static extern int ClockGetTime(int clock, out TimeSpec time);
}
