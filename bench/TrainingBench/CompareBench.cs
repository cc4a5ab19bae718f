using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using OnnxLora.Core;
using OnnxLora.Core.HuggingFace;
using OnnxLora.Core.Peft;
using OnnxLora.Models;
using OnnxLora.Models.Llama;
using OnnxLora.Models.Lora;
using OnnxLora.Training;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace OnnxLora.TrainingBench;

/// <summary>One worker process's measurements.</summary>
internal sealed record WorkerResult(string Mode, double[] StepMs, long RssBeforeModelKiB, long RssAfterModelKiB, long RssEndKiB, long PeakKiB,
    long TrainableParameters, long TotalParameters, long OptimizerStateBytes, double[]? StepCpuMs = null, double[]? StepSystemCpuMs = null);

/// <summary>
/// LoRA vs full fine-tuning of the same model and batch: each run is a fresh child process (so its
/// VmHWM is its own), alternating LoRA / full, several rounds.
/// </summary>
internal static class CompareBench
{
    public static LlamaConfig Config(int hidden, int layers) =>
        Llama(hidden, layers, heads: hidden / 64, kvHeads: hidden / 64, vocab: 4096, intermediate: hidden * 11 / 4, maxPositions: 512);

    /// <summary>The LLaMA configs the training benches build random checkpoints of.</summary>
    public static LlamaConfig Llama(int hidden, int layers, int heads, int kvHeads, int vocab, int intermediate, int maxPositions) => new()
    {
        ModelType = "llama",
        Architectures = ["LlamaForCausalLM"],
        VocabSize = vocab,
        HiddenSize = hidden,
        IntermediateSize = intermediate,
        NumHiddenLayers = layers,
        NumAttentionHeads = heads,
        NumKeyValueHeads = kvHeads,
        MaxPositionEmbeddings = maxPositions,
        RmsNormEps = 1e-5,
        BosTokenId = 1,
        EosTokenIds = [2],
        PadTokenId = 0,
        TorchDtype = "float32",
    };

    public static readonly string[] Targets = ["q_proj", "k_proj", "v_proj", "o_proj"];

    public const int Rank = 8;

    /// <summary>Runs in a child process: builds the model, trains <paramref name="steps"/> steps, prints one JSON line.</summary>
    public static int Worker(string mode, int steps, int hidden, int layers, int batch, int seq) =>
        Worker(mode, steps, Config(hidden, layers), batch, seq);

    /// <summary>
    /// As above for any config. <paramref name="mode"/> is "lora" or "full", optionally followed by "-ckpt"
    /// (gradient checkpointing per decoder layer) and/or "-bf16" (LoRA only: frozen base weights in bf16).
    /// </summary>
    public static int Worker(string mode, int steps, LlamaConfig config, int batch, int seq)
    {
        string[] parts = mode.Split('-');
        bool lora = parts[0] == "lora";
        // As the trainer does with --gradient-checkpointing (Trainer.Train), unless the bench is asked for glibc's default
        // (ONNXLORA_DEFAULT_MALLOC=1) or for no huge pages (ONNXLORA_NO_TORCH_HUGEPAGES=1) to compare.
        // "ckptN": checkpoint only the first N layers (TrainerOptions.GradientCheckpointingLayers).
        // "sel", "selN": the same with selective granularity (TrainerOptions.GradientCheckpointingGranularity).
        // "mmap": no checkpointing, but the heap settings checkpointing brings (to tell the two apart).
        bool selective = parts.Any(x => x.StartsWith("sel", StringComparison.Ordinal));
        int? checkpointLayers = parts.Where(x => (x.StartsWith("ckpt", StringComparison.Ordinal) && x.Length > 4) || (x.StartsWith("sel", StringComparison.Ordinal) && x.Length > 3))
            .Select(x => (int?)int.Parse(x.AsSpan(selective ? 3 : 4), CultureInfo.InvariantCulture)).FirstOrDefault();
        bool checkpointing = parts.Contains("ckpt") || parts.Contains("sel") || checkpointLayers is not null;
        if ((checkpointing || parts.Contains("mmap")) && Environment.GetEnvironmentVariable("ONNXLORA_DEFAULT_MALLOC") != "1")
        {
            NativeHeap.UseFixedMmapThreshold();
            if (Environment.GetEnvironmentVariable("ONNXLORA_NO_TORCH_HUGEPAGES") != "1")
            {
                NativeHeap.UseHugePagesForTorchBuffers();
            }
        }
        long rss0 = ProcessMemory.RssKiB();
        using var model = LlamaForCausalLM.CreateRandom(config, seed: 1);
        long rss1 = ProcessMemory.RssKiB();
        model.Model.GradientCheckpointing = checkpointing;
        model.Model.GradientCheckpointingLayers = checkpointLayers;
        model.Model.GradientCheckpointingGranularity = selective ? GradientCheckpointingGranularity.Selective : GradientCheckpointingGranularity.Full;
        List<Parameter> trainable;
        if (lora)
        {
            LoraInjection.Apply(model, new PeftAdapterConfig { TargetModules = TargetModules.FromList(Targets), R = Rank, Alpha = 2 * Rank }, 1);
            if (parts.Contains("bf16"))
            {
                FrozenBaseWeights.Convert(model, DType.BF16);
            }
            trainable = LoraInjection.TrainableParameters(model).Select(p => p.Parameter).ToList();
        }
        else
        {
            trainable = model.parameters().ToList();
            foreach (var p in trainable)
            {
                p.requires_grad = true;
            }
        }
        model.train();
        // The trainer's optimizer; "tsadamw": TorchSharp's own AdamW, whose step keeps every parameter's temporaries to its end.
        using var optimizer = parts.Contains("tsadamw")
            ? new AdamW(trainable, lr: 1e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01)
            : new ScopedAdamW(trainable, lr: 1e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01);
        using var generator = new Generator(7);
        long vocab = config.VocabSize;
        using var ids = randint(3, vocab, [batch, seq], ScalarType.Int64, generator: generator);
        using var mask = ones(batch, seq, ScalarType.Int64);
        var times = new double[steps];
        var cpu = new double[steps];
        var system = new double[steps];
        using var self = Process.GetCurrentProcess();
        for (int s = 0; s < steps; s++)
        {
            self.Refresh();
            var cpu0 = self.TotalProcessorTime;
            var system0 = self.PrivilegedProcessorTime;
            long t0 = Stopwatch.GetTimestamp();
            using (var scope = NewDisposeScope())
            {
                var logits = model.call(ids, mask);
                var loss = nn.functional.cross_entropy(logits.narrow(1, 0, seq - 1).reshape(-1, vocab), ids.narrow(1, 1, seq - 1).reshape(-1));
                loss.backward();
                optimizer.step();
            }
            optimizer.zero_grad();
            times[s] = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
            self.Refresh();
            cpu[s] = (self.TotalProcessorTime - cpu0).TotalMilliseconds;
            system[s] = (self.PrivilegedProcessorTime - system0).TotalMilliseconds;
        }
        long trainableCount = trainable.Sum(p => p.numel());
        var result = new WorkerResult(mode, times, rss0, rss1, ProcessMemory.RssKiB(), ProcessMemory.PeakKiB(),
            trainableCount, model.parameters().Sum(p => p.numel()), 2 * trainableCount * sizeof(float), cpu, system);
        Console.WriteLine(JsonSerializer.Serialize(result));
        return 0;
    }

    /// <summary>Spawns workers A B A B … and returns their results in run order.</summary>
    public static List<WorkerResult> Run(int rounds, int steps, int hidden, int layers, int batch, int seq, int threads, Action<string> log)
    {
        var results = new List<WorkerResult>();
        for (int round = 0; round < rounds; round++)
        {
            foreach (string mode in round % 2 == 0 ? new[] { "lora", "full" } : new[] { "full", "lora" })
            {
                var result = RunWorker(["worker", "--mode", mode, "--steps", Str(steps), "--hidden", Str(hidden), "--layers", Str(layers),
                    "--batch", Str(batch), "--seq", Str(seq), "--threads", Str(threads)]);
                log($"round {round + 1} {mode}: steps ms [{string.Join(", ", result.StepMs.Select(t => t.ToString("F0", CultureInfo.InvariantCulture)))}], peak {result.PeakKiB / 1024} MiB");
                results.Add(result);
            }
        }
        return results;
    }

    /// <summary>Runs this program as a child with <paramref name="arguments"/> (a worker command) and reads the JSON line it ends with.</summary>
    public static WorkerResult RunWorker(IEnumerable<string> arguments)
    {
        var start = VersusBench.ChildStart(Environment.ProcessPath!, arguments, prependEntry: true);
        start.RedirectStandardError = false;
        using var process = Process.Start(start)!;
        string output = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"worker {string.Join(' ', arguments)} failed with exit code {process.ExitCode}: {output}");
        }
        return JsonSerializer.Deserialize<WorkerResult>(output.Trim().Split('\n')[^1])!;
    }

    private static string Str(int v) => v.ToString(CultureInfo.InvariantCulture);
}
