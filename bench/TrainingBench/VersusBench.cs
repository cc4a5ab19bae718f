using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using OnnxLora.Core.HuggingFace;
using OnnxLora.Core.Peft;
using OnnxLora.Models.Llama;
using OnnxLora.Training;

namespace OnnxLora.TrainingBench;

/// <summary>One trial of one side: per-step wall seconds and tokens, plus what the side reports about itself.</summary>
/// <remarks>
/// CPU seconds (the process's user + system time over the step) count what the step cost whatever else ran on the
/// machine; on a shared, overloaded machine they are the steadier of the two measures.
/// </remarks>
internal sealed record SideResult(double[] StepSeconds, double[] StepCpuSeconds, long[] Tokens, double[] Losses, string Blas, long PeakKiB)
{
    /// <summary>Tokens per wall second over the steps after <paramref name="warmup"/>.</summary>
    public double TokensPerSecond(int warmup) => Tokens.Skip(warmup).Sum() / StepSeconds.Skip(warmup).Sum();

    /// <summary>Tokens per CPU second over the steps after <paramref name="warmup"/>.</summary>
    public double TokensPerCpuSecond(int warmup) => Tokens.Skip(warmup).Sum() / StepCpuSeconds.Skip(warmup).Sum();
}

/// <summary>
/// <c>versus [--sizes 256,512] [--trials 5] [--steps N --warmup W] [--doc FILE]</c>: our trainer (<see cref="Trainer.Train"/>, in a
/// fresh child process per trial) against a plain PyTorch LoRA loop (reference/torch_lora.py under
/// Debian's python3-torch with OpenBLAS) on the same checkpoint, data, batch, rank, optimizer and one
/// thread each, trials interleaved (ours, torch; torch, ours; …). Writes a Markdown section.
/// </summary>
internal static class VersusBench
{
    /// <summary>A benchmark size: the checkpoint shape and the sequence length of its batches.</summary>
    internal sealed record Size(string Name, int Hidden, int Layers, int Heads, int KvHeads, int Vocab, int Seq, int Steps, int Warmup)
    {
        public LlamaConfig Config() =>
            CompareBench.Llama(Hidden, Layers, Heads, KvHeads, Vocab, intermediate: (Hidden * 8 / 3 + 15) / 16 * 16, maxPositions: 2048);
    }

    public static readonly Size[] Sizes =
    [
        new("256", Hidden: 256, Layers: 4, Heads: 8, KvHeads: 4, Vocab: 1024, Seq: 128, Steps: 16, Warmup: 4),
        new("512", Hidden: 512, Layers: 8, Heads: 8, KvHeads: 4, Vocab: 1024, Seq: 512, Steps: 5, Warmup: 2),
    ];

    public const int Batch = 8;
    public const int Rank = 16;
    public const double Alpha = 32;
    public const double LearningRate = 1e-3;
    public static readonly string[] Targets = ["q_proj", "v_proj"];

    private const string ReferencePython = "/usr/bin/python3";

    public static int Run(Dictionary<string, string> args)
    {
        CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;
        int trials = Program.Int(args, "trials", 5);
        var sizes = (args.TryGetValue("sizes", out string? s) ? Sizes.Where(z => s.Split(',').Contains(z.Name)).ToArray() : Sizes)
            .Select(z => z with { Steps = Program.Int(args, "steps", z.Steps), Warmup = Program.Int(args, "warmup", z.Warmup) }).ToArray();
        string? doc = args.TryGetValue("doc", out string? d) ? d : null;
        var clock = Stopwatch.StartNew();
        void Log(string m) => Console.Error.WriteLine($"[{clock.Elapsed.TotalSeconds,6:F0} s] {m}");
        EnsureReference(Log);
        string script = ReferenceScript();
        string root = Path.Combine(Path.GetTempPath(), "training-bench-versus-" + Guid.NewGuid().ToString("N"));
        var sb = new StringBuilder();
        string loadStart = Report.LoadAverage();
        try
        {
            var rows = new List<string>();
            var details = new List<string>();
            string? oursBlas = null, torchBlas = null;
            foreach (var size in sizes)
            {
                string model = Path.Combine(root, "model-" + size.Name);
                string data = Path.Combine(root, "data-" + size.Name + ".jsonl");
                Prepare(size, model, data);
                var ours = new List<SideResult>();
                var torch = new List<SideResult>();
                for (int t = 0; t < trials; t++)
                {
                    foreach (bool oursFirst in t % 2 == 0 ? new[] { true, false } : [false, true])
                    {
                        var r = oursFirst ? RunOurs(size, model, data, root) : RunTorch(size, model, data, script);
                        (oursFirst ? ours : torch).Add(r);
                        Log($"{size.Name} trial {t + 1} {(oursFirst ? "ours " : "torch")}: {r.TokensPerSecond(size.Warmup),7:F0} tokens/s, {r.TokensPerCpuSecond(size.Warmup),7:F0} tokens/CPU s; steps s [{string.Join(", ", r.StepSeconds.Select(x => x.ToString("F2")))}]");
                    }
                }
                oursBlas = ours[0].Blas;
                torchBlas = torch[0].Blas;
                var c = size.Config();
                string shape = $"hidden {size.Hidden}, {size.Layers} layers, {size.Heads}/{size.KvHeads} heads, MLP {c.IntermediateSize}, vocab {size.Vocab}; {Batch} × {size.Seq} tokens";
                foreach (bool wall in new[] { true, false })
                {
                    var a = ours.Select(r => wall ? r.TokensPerSecond(size.Warmup) : r.TokensPerCpuSecond(size.Warmup)).ToList();
                    var b = torch.Select(r => wall ? r.TokensPerSecond(size.Warmup) : r.TokensPerCpuSecond(size.Warmup)).ToList();
                    var paired = a.Zip(b, (x, y) => x / y).ToList();
                    rows.Add($"| {shape} | {(wall ? "wall" : "CPU")} | {Stats.Median(a):F0} ({a.Min():F0}–{a.Max():F0}) | {Stats.Median(b):F0} ({b.Min():F0}–{b.Max():F0}) | **{Stats.Median(a) / Stats.Median(b):F2}** | {Stats.Median(paired):F2} ({paired.Min():F2}–{paired.Max():F2}) |");
                    details.Add($"- hidden {size.Hidden}, tokens per {(wall ? "wall" : "CPU")} second per trial: ours [{string.Join(", ", a.Select(x => x.ToString("F0")))}], PyTorch [{string.Join(", ", b.Select(x => x.ToString("F0")))}]");
                }
                details.Add($"- hidden {size.Hidden}: {size.Steps} steps per trial, the first {size.Warmup} left out; first-step loss ours {ours[0].Losses[0]:F4}, PyTorch {torch[0].Losses[0]:F4} (same checkpoint and data; LoRA A drawn differently); peak RSS ours {Stats.Median(ours.Select(r => r.PeakKiB / 1024.0).ToList()):F0} MiB, PyTorch {Stats.Median(torch.Select(r => r.PeakKiB / 1024.0).ToList()):F0} MiB (medians).");
            }
            sb.AppendLine($"Produced by `dotnet run -c Release --project bench/TrainingBench -- versus --sizes {string.Join(',', sizes.Select(z => z.Name))} --trials {trials} --steps {sizes[0].Steps} --warmup {sizes[0].Warmup}` on {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC; {Environment.ProcessorCount} logical CPUs shared with other sessions (load average {loadStart} at the start, {Report.LoadAverage()} at the end).");
            sb.AppendLine();
            sb.AppendLine($"Work per step on both sides: batch {Batch} of random token ids (the same .jsonl), LoRA r {Rank}, alpha {Alpha:F0} on {string.Join(" + ", Targets)}, AdamW (lr {LearningRate:G3} cosine, betas 0.9/0.999, eps 1e-8, weight decay 0.01), gradient clipping at 1.0, loss summed over predicted tokens / their count; one intra-op thread each. Ours: `Trainer.Train` in a fresh process per trial (wall time between its per-step progress reports; no held-out split). PyTorch: `bench/TrainingBench/reference/torch_lora.py` (the same LLaMA forward as Hugging Face's eager attention) in a fresh process per trial. Trials alternate ours/PyTorch, PyTorch/ours, ….");
            sb.AppendLine();
            sb.AppendLine("| model; batch | per | ours tokens/s median (min–max) | PyTorch tokens/s median (min–max) | ratio of medians ours/PyTorch | per-trial ratio median (min–max) |");
            sb.AppendLine("|---|---|---:|---:|---:|---:|");
            rows.ForEach(r => sb.AppendLine(r));
            sb.AppendLine();
            sb.AppendLine($"BLAS: ours {oursBlas}; PyTorch {torchBlas}.");
            sb.AppendLine();
            details.ForEach(l => sb.AppendLine(l));
            Console.WriteLine(sb.ToString());
            if (doc is not null)
            {
                File.WriteAllText(doc, sb.ToString());
                Log($"wrote {doc}");
            }
            return 0;
        }
        finally
        {
            if (Directory.Exists(root))
            {
                Directory.Delete(root, recursive: true);
            }
        }
    }

    /// <summary><c>versus-prepare --size NAME --out DIR</c>: writes DIR/model and DIR/data.jsonl of a size, to run either side by hand.</summary>
    public static int PrepareOnly(Dictionary<string, string> args)
    {
        var size = Sizes.Single(z => z.Name == args["size"]);
        Prepare(size, Path.Combine(args["out"], "model"), Path.Combine(args["out"], "data.jsonl"));
        return 0;
    }

    /// <summary>A random checkpoint (fixed seed) and exactly <c>Batch × Steps</c> rows of <c>Seq</c> random token ids.</summary>
    private static void Prepare(Size size, string modelDir, string dataFile)
    {
        using (var model = LlamaForCausalLM.CreateRandom(size.Config(), seed: 11))
        {
            model.SaveCheckpoint(modelDir, overwrite: true);
        }
        var random = new Random(5);
        using var writer = new StreamWriter(dataFile);
        for (int row = 0; row < Batch * size.Steps; row++)
        {
            writer.WriteLine("{\"input_ids\": [" + string.Join(",", Enumerable.Range(0, size.Seq).Select(_ => random.Next(3, size.Vocab))) + "]}");
        }
    }

    private static SideResult RunOurs(Size size, string model, string data, string root) =>
        Child(Environment.ProcessPath!, ["ours-worker", "--model", model, "--data", data, "--steps", Str(size.Steps), "--seq", Str(size.Seq),
            "--out", Path.Combine(root, "adapter")], prependEntry: true);

    private static SideResult RunTorch(Size size, string model, string data, string script) =>
        Child(ReferencePython, [script, "--model", model, "--data", data, "--steps", Str(size.Steps), "--batch", Str(Batch),
            "--rank", Str(Rank), "--alpha", Alpha.ToString(CultureInfo.InvariantCulture), "--targets", string.Join(",", Targets),
            "--threads", "1", "--lr", LearningRate.ToString(CultureInfo.InvariantCulture)], prependEntry: false);

    /// <summary>Child process of the ours side: trains with <see cref="Trainer.Train"/> and prints one JSON line.</summary>
    public static int OursWorker(Dictionary<string, string> args)
    {
        var steps = new List<(TimeSpan Elapsed, TimeSpan Cpu, int Step, double Loss)>();
        using var self = Process.GetCurrentProcess();
        var options = new TrainerOptions
        {
            Steps = Program.Int(args, "steps", 10),
            BatchSize = Batch,
            MaxLength = Program.Int(args, "seq", 128),
            LearningRate = LearningRate,
            Lora = new PeftAdapterConfig { R = Rank, Alpha = Alpha, TargetModules = TargetModules.FromList(Targets) },
            EvalFraction = 0,
            Threads = 1,
            Overwrite = true,
        };
        var result = Trainer.Train(args["model"], args["data"], args["out"], options,
            new SyncProgress(p =>
            {
                self.Refresh();
                steps.Add((p.Elapsed, self.TotalProcessorTime, p.Step, p.Loss));
            }));
        var seconds = new double[result.Steps];
        var cpu = new double[result.Steps];
        var losses = new double[result.Steps];
        for (int i = 1; i < steps.Count; i++)
        {
            seconds[steps[i].Step - 1] = (steps[i].Elapsed - steps[i - 1].Elapsed).TotalSeconds;
            cpu[steps[i].Step - 1] = (steps[i].Cpu - steps[i - 1].Cpu).TotalSeconds;
            losses[steps[i].Step - 1] = steps[i].Loss;
        }
        long tokens = (long)Batch * options.MaxLength;
        var side = new SideResult(seconds, cpu, [.. Enumerable.Repeat(tokens, result.Steps)], losses, LibtorchBlas(options.Threads!.Value), ProcessMemory.PeakKiB());
        Console.WriteLine(JsonSerializer.Serialize(side));
        return 0;
    }

    /// <summary>
    /// The BLAS of our libtorch: the official libtorch CPU build links oneMKL statically into libtorch_cpu.so;
    /// its version string comes from MKL's own C entry point, which is there only if MKL is. The code path is the one
    /// MKL chose at its first GEMM (<c>mkl_serv_cpu_detect</c>; on non-Intel CPUs it is the generic one unless
    /// build/torchsharp-compat/mkl_cpu.sh put its shim in the output).
    /// </summary>
    private static string LibtorchBlas(int threads)
    {
        var buffer = new byte[256];
        MklGetVersionString(buffer, buffer.Length);
        string version = Encoding.ASCII.GetString(buffer).TrimEnd('\0', ' ');
        int path = MklCpuDetect();
        // Numbers read off MKL 2024.2 by forcing MKL_ENABLE_INSTRUCTIONS: 0 generic, 3 SSE4.2, 5 AVX2, above that AVX-512.
        string kernels = path switch { 0 => "generic (\"def\")", 3 => "SSE4.2", 5 => "AVX2", > 5 => "AVX-512", _ => "other" };
        return $"libtorch {TorchVersion()} with {version} (statically linked in libtorch_cpu.so; MKL kernels: {kernels}, mkl_serv_cpu_detect {path}), {threads} thread(s)";
    }

    private static string TorchVersion() => "2.10.0 (libtorch-cpu-linux-x64)";

    [DllImport("libtorch_cpu", EntryPoint = "MKL_Get_Version_String")]
    private static extern void MklGetVersionString(byte[] buffer, int length);

    [DllImport("libtorch_cpu", EntryPoint = "mkl_serv_cpu_detect")]
    private static extern int MklCpuDetect();

    private static SideResult Child(string exe, string[] arguments, bool prependEntry)
    {
        var start = ChildStart(exe, arguments, prependEntry);
        // Debian's torch is built with BLAS_INFO=generic, so torch.set_num_threads does not reach OpenBLAS, whose
        // pthreads would otherwise spin on the second core: one thread each means saying so to OpenBLAS too.
        start.Environment["OPENBLAS_NUM_THREADS"] = "1";
        using var process = Process.Start(start)!;
        var stderr = process.StandardError.ReadToEndAsync();
        string output = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{exe} {string.Join(' ', arguments)} failed with exit code {process.ExitCode}: {output} {stderr.Result}");
        }
        string line = output.Trim().Split('\n')[^1];
        if (exe != ReferencePython)
        {
            return JsonSerializer.Deserialize<SideResult>(line)!;
        }
        using var json = JsonDocument.Parse(line);
        var r = json.RootElement;
        string blas = string.Join(", ", r.GetProperty("blas").EnumerateArray().Select(e => e.GetString()));
        string info = string.Join(", ", r.GetProperty("blas_info").EnumerateArray().Select(e => e.GetString()));
        string core = r.TryGetProperty("blas_core", out var c) && c.GetString() is { Length: > 0 } name ? $" (OpenBLAS kernels: {name})" : "";
        return new SideResult(
            [.. r.GetProperty("step_seconds").EnumerateArray().Select(e => e.GetDouble())],
            [.. r.GetProperty("step_cpu_seconds").EnumerateArray().Select(e => e.GetDouble())],
            [.. r.GetProperty("tokens").EnumerateArray().Select(e => e.GetInt64())],
            [.. r.GetProperty("losses").EnumerateArray().Select(e => e.GetDouble())],
            $"torch {r.GetProperty("torch").GetString()} ({info}) with {(blas.Length > 0 ? blas : "no BLAS library mapped")}{core}, {r.GetProperty("threads").GetInt32()} torch thread(s), OPENBLAS_NUM_THREADS={r.GetProperty("openblas_threads").GetString()}",
            r.GetProperty("peak_kib").GetInt64());
    }

    /// <summary>A child process of <paramref name="exe"/>; this bench's own entry dll first when it runs under the dotnet host.</summary>
    public static ProcessStartInfo ChildStart(string exe, IEnumerable<string> arguments, bool prependEntry)
    {
        var start = new ProcessStartInfo(exe) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        string entry = Environment.GetCommandLineArgs()[0];
        if (prependEntry && Path.GetFileNameWithoutExtension(exe) == "dotnet" && entry.EndsWith(".dll", StringComparison.OrdinalIgnoreCase))
        {
            start.ArgumentList.Add(entry);
        }
        foreach (string a in arguments)
        {
            start.ArgumentList.Add(a);
        }
        return start;
    }

    /// <summary>
    /// Installs Debian's python3-torch and libopenblas0-pthread when missing (as scripts/setup.sh does for
    /// its packages): without OpenBLAS, Debian's torch falls back to the reference BLAS, many times slower.
    /// </summary>
    private static void EnsureReference(Action<string> log)
    {
        string[] packages = ["python3-torch", "libopenblas0-pthread"];
        var missing = packages.Where(p => Run("dpkg", ["-s", p]) != 0).ToArray();
        if (missing.Length == 0)
        {
            return;
        }
        log($"installing {string.Join(' ', missing)} with apt-get");
        if (Run("apt-get", ["install", "-y", "-qq", "--no-install-recommends", .. missing]) != 0)
        {
            throw new InvalidOperationException($"could not install {string.Join(' ', missing)}; run: sudo apt-get install -y {string.Join(' ', missing)}");
        }
    }

    private static int Run(string exe, string[] arguments)
    {
        var start = new ProcessStartInfo(exe) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        start.Environment["DEBIAN_FRONTEND"] = "noninteractive";
        foreach (string a in arguments)
        {
            start.ArgumentList.Add(a);
        }
        using var process = Process.Start(start)!;
        process.StandardOutput.ReadToEnd();
        process.StandardError.ReadToEnd();
        process.WaitForExit();
        return process.ExitCode;
    }

    /// <summary>reference/torch_lora.py, copied next to the bench's binary by the project file.</summary>
    private static string ReferenceScript() => Path.Combine(AppContext.BaseDirectory, "reference", "torch_lora.py");

    private static string Str(int v) => v.ToString(CultureInfo.InvariantCulture);

    /// <summary>Calls back on the reporting thread (Progress&lt;T&gt; would post to the thread pool and reorder).</summary>
    private sealed class SyncProgress(Action<TrainingProgress> report) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => report(value);
    }
}
