using System.Diagnostics;
using System.Globalization;
using OnnxLora.Training.Sample;

namespace OnnxLora.TrainingBench;

/// <summary>
/// Training benchmarks and the sample generator's command line:
/// <c>sample --out DIR [--seed N] [--pretrain-steps N]</c> regenerates the sample checkpoint.
/// </summary>
internal static class Program
{
    public static int Main(string[] args)
    {
        CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
        CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;
        if (args.Length == 0)
        {
            Console.Error.WriteLine("usage: training-bench sample --out DIR [--seed N] [--pretrain-steps N] [--threads N] | all [--doc FILE] | versus [--sizes 256,512] [--trials N] [--doc FILE] | memory ...");
            return 2;
        }
        var options = Args.Parse(args.Skip(1));
        if (options.TryGetValue("threads", out string? threads))
        {
            TorchSharp.torch.set_num_threads(int.Parse(threads, CultureInfo.InvariantCulture));
        }
        switch (args[0])
        {
            case "sample":
                {
                    var sample = new SampleOptions();
                    if (options.TryGetValue("seed", out string? seed))
                    {
                        sample = sample with { Seed = int.Parse(seed, CultureInfo.InvariantCulture) };
                    }
                    if (options.TryGetValue("pretrain-steps", out string? steps))
                    {
                        sample = sample with { PretrainSteps = int.Parse(steps, CultureInfo.InvariantCulture) };
                    }
                    var clock = Stopwatch.StartNew();
                    SampleGenerator.Generate(options["out"], sample, overwrite: options.ContainsKey("force"),
                        new ConsoleProgress(clock));
                    Console.WriteLine($"sample written to {options["out"]} in {clock.Elapsed.TotalSeconds:F1} s");
                    return 0;
                }
            case "sample-lora":
                return SampleLora.Run(options);
            case "worker":
                return CompareBench.Worker(options["mode"], Int(options, "steps", 5), Int(options, "hidden", 512), Int(options, "layers", 8),
                    Int(options, "batch", 4), Int(options, "seq", 128));
            case "memory":
                return MemoryBench.Run(options);
            case "memory-worker":
                return MemoryBench.Worker(options);
            case "soak":
                SoakBench.Run(Int(options, "steps", 1000), Int(options, "threads", 1), Console.WriteLine);
                return 0;
            case "versus":
                return VersusBench.Run(options);
            case "versus-prepare":
                return VersusBench.PrepareOnly(options);
            case "profile":
                return StepProfile.Run(options);
            case "ours-worker":
                return VersusBench.OursWorker(options);
            case "all":
                return Report.Run(options);
            default:
                Console.Error.WriteLine($"unknown command '{args[0]}'");
                return 2;
        }
    }

    public static int Int(Dictionary<string, string> a, string k, int d) => a.TryGetValue(k, out string? v) ? int.Parse(v, CultureInfo.InvariantCulture) : d;

    private sealed class ConsoleProgress(Stopwatch clock) : IProgress<string>
    {
        public void Report(string value) => Console.WriteLine($"[{clock.Elapsed.TotalSeconds,7:F1} s] {value}");
    }
}

/// <summary>"--name value" and "--flag" pairs.</summary>
internal static class Args
{
    public static Dictionary<string, string> Parse(IEnumerable<string> args)
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        string? pending = null;
        foreach (string a in args)
        {
            if (a.StartsWith("--", StringComparison.Ordinal))
            {
                if (pending is not null)
                {
                    result[pending] = "true";
                }
                pending = a[2..];
            }
            else if (pending is not null)
            {
                result[pending] = a;
                pending = null;
            }
        }
        if (pending is not null)
        {
            result[pending] = "true";
        }
        return result;
    }
}
