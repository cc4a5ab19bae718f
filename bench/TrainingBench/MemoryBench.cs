using System.Globalization;
using System.Text;
using OnnxLora.Core.HuggingFace;

namespace OnnxLora.TrainingBench;

/// <summary>
/// <c>memory</c>: peak RSS and step time of LoRA and full fine-tuning, each without and with gradient checkpointing,
/// and LoRA with a bf16 base (modes lora, full, -ckpt, -ckptN for the first N layers only, -sel / -selN for selective checkpointing, -mmap for
/// checkpointing's heap settings without checkpointing, -tsadamw for TorchSharp's AdamW instead of the trainer's ScopedAdamW, -bf16), on one LLaMA shape (default hidden 1024, 16 layers, 16 heads, intermediate 2816,
/// vocab 32000, seq 1024, batch 1). Every run is a fresh child process (its VmHWM is its own); the modes run in an
/// order rotated each trial (interleaved). Step time is the last step's (the first pays for first-touch allocation),
/// wall and process CPU time, since the machine is shared.
/// </summary>
internal static class MemoryBench
{
    public static LlamaConfig Shape(Dictionary<string, string> a) => CompareBench.Llama(
        Program.Int(a, "hidden", 1024), Program.Int(a, "layers", 16), Program.Int(a, "heads", 16), Program.Int(a, "kv-heads", 16),
        Program.Int(a, "vocab", 32000), Program.Int(a, "intermediate", 2816), Program.Int(a, "seq", 1024));

    /// <summary>The child: one mode on the shape given by the same options.</summary>
    public static int Worker(Dictionary<string, string> a) =>
        CompareBench.Worker(a["mode"], Program.Int(a, "steps", 2), Shape(a), Program.Int(a, "batch", 1), Program.Int(a, "seq", 1024));

    public static int Run(Dictionary<string, string> a)
    {
        string[] modes = (a.TryGetValue("modes", out string? m) ? m : "lora,lora-ckpt,full,full-ckpt,lora-bf16,lora-bf16-ckpt").Split(',');
        int trials = Program.Int(a, "trials", 3);
        string[] forward = ["hidden", "layers", "heads", "kv-heads", "vocab", "intermediate", "seq", "batch", "steps", "threads"];
        var results = modes.ToDictionary(x => x, _ => new List<WorkerResult>());
        for (int t = 0; t < trials; t++)
        {
            foreach (string mode in modes.Skip(t % modes.Length).Concat(modes.Take(t % modes.Length)))
            {
                var args = new List<string> { "memory-worker", "--mode", mode };
                foreach (string key in forward.Where(a.ContainsKey))
                {
                    args.AddRange(["--" + key, a[key]]);
                }
                var r = CompareBench.RunWorker(args);
                results[mode].Add(r);
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"trial {t + 1} {mode,-15} peak {r.PeakKiB / 1024,6} MiB  steps s [{string.Join(", ", r.StepMs.Select(x => (x / 1000).ToString("F1", CultureInfo.InvariantCulture)))}]  CPU s [{string.Join(", ", r.StepCpuMs!.Select(x => (x / 1000).ToString("F1", CultureInfo.InvariantCulture)))}] of which system [{string.Join(", ", (r.StepSystemCpuMs ?? []).Select(x => (x / 1000).ToString("F1", CultureInfo.InvariantCulture)))}]  load {File.ReadAllText("/proc/loadavg").Split(' ')[0]}"));
            }
            // After every trial, so that a run stopped early still leaves the trials it finished.
            string table = Table(results, modes);
            Console.WriteLine(table);
            if (a.TryGetValue("doc", out string? doc))
            {
                File.WriteAllText(doc, table);
            }
        }
        return 0;
    }

    private static string Table(Dictionary<string, List<WorkerResult>> results, string[] modes)
    {
        static string Range(IReadOnlyList<double> v, string format) =>
            string.Create(CultureInfo.InvariantCulture, $"{Stats.Median(v).ToString(format, CultureInfo.InvariantCulture)} ({v.Min().ToString(format, CultureInfo.InvariantCulture)}–{v.Max().ToString(format, CultureInfo.InvariantCulture)})");
        static double[] Peak(List<WorkerResult> r) => [.. r.Select(x => x.PeakKiB / 1024.0)];
        static double[] Wall(List<WorkerResult> r) => [.. r.Select(x => x.StepMs[^1] / 1000)];
        static double[] Cpu(List<WorkerResult> r) => [.. r.Select(x => x.StepCpuMs![^1] / 1000)];
        var sb = new StringBuilder();
        sb.AppendLine("| mode | trainable params | peak RSS MiB, median (range) | last step wall s | last step CPU s | vs the same mode without checkpointing |");
        sb.AppendLine("|---|---|---|---|---|---|");
        foreach (string mode in modes)
        {
            var r = results[mode];
            string versus = "";
            string plain = System.Text.RegularExpressions.Regex.Replace(mode, "-(ckpt|sel)[0-9]*|-mmap|-tsadamw", "");
            if (plain != mode && results.TryGetValue(plain, out var p))
            {
                // Paired by trial: the two runs of one trial ran within the same rotation of modes.
                double[] peakChange = [.. r.Zip(p, (c, b) => 100 * ((double)c.PeakKiB / b.PeakKiB - 1))];
                double[] wallRatio = [.. Wall(r).Zip(Wall(p), (c, b) => c / b)];
                double[] cpuRatio = [.. Cpu(r).Zip(Cpu(p), (c, b) => c / b)];
                versus = $"peak {Range(peakChange, "+0;−0")} %, step time ×{Range(wallRatio, "F2")} wall, ×{Range(cpuRatio, "F2")} CPU";
            }
            sb.AppendLine(string.Create(CultureInfo.InvariantCulture,
                $"| {mode} | {r[0].TrainableParameters:N0} of {r[0].TotalParameters:N0} | {Range(Peak(r), "F0")} | {Range(Wall(r), "F1")} | {Range(Cpu(r), "F1")} | {versus} |"));
        }
        return sb.ToString();
    }
}
