using System.Diagnostics;
using System.Globalization;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using Microsoft.ML.OnnxRuntimeGenAI;
using OnnxLora.Core;
using OnnxLora.Core.Onnx;
using OnnxLora.Export;
using OnnxLora.Generate;
using OnnxLora.Models;
using OnnxLora.Models.Llama;
using OnnxLora.Models.Onnx;

// Decode speed of the with-past export on CPU, side by side in one run (interleaved trials, medians and range):
//  1. tokens/s decoding one token at a time with the key/value cache vs recomputing the whole sequence each step,
//     at several context lengths;
//  2. achieved weight bytes/s (weight bytes × cached tokens/s) over this machine's copy bandwidth (memcpy of a
//     buffer far larger than the last-level cache), measured in the same run;
//  3. our GenAI folder in ONNX Runtime GenAI vs our own ONNX Runtime loop over the same graph.
// With --eager, instead: the TorchSharp EagerGenerator (fp32) with its key/value cache vs recomputing the whole
// sequence each step, tokens/s at each context length (no export, no ONNX Runtime).
//   dotnet run -c Release --project bench/DecodeBench -- [--hidden 1024] [--layers 12] [--vocab 32000]
//       [--lengths 64,256,1024] [--steps 16] [--trials 3] [--dtype fp32|fp16] [--threads 2] [--eager]
var inv = CultureInfo.InvariantCulture;
int hidden = IntArg("--hidden", 1024), layers = IntArg("--layers", 12), vocab = IntArg("--vocab", 32000);
int steps = IntArg("--steps", 16), trials = IntArg("--trials", 3), threads = IntArg("--threads", 2);
int[] lengths = StringArg("--lengths", "64,256,1024").Split(',').Select(s => int.Parse(s, inv)).ToArray();
var dtype = StringArg("--dtype", "fp32") == "fp16" ? DType.F16 : DType.F32;
string dir = Path.Combine(Path.GetTempPath(), "onnxlora-decodebench-" + Guid.NewGuid().ToString("N")[..8]);
Directory.CreateDirectory(dir);

var config = TinyConfigs.Llama() with
{
    VocabSize = vocab,
    HiddenSize = hidden,
    IntermediateSize = hidden * 11 / 4,
    NumHiddenLayers = layers,
    NumAttentionHeads = hidden / 64,
    NumKeyValueHeads = hidden / 128,
    MaxPositionEmbeddings = lengths.Max() + steps + 1,
    EosTokenIds = [vocab - 1],
};
using var model = LlamaForCausalLM.CreateRandom(config, seed: 1, std: 0.02);
model.eval();
long weightBytes = model.parameters().Sum(p => p.numel()) * dtype.SizeOf();
Console.WriteLine($"model: llama hidden {hidden}, layers {layers}, heads {config.NumAttentionHeads}/{config.NumKeyValueHeads} kv, vocab {vocab}, {dtype}, weights {weightBytes / 1e6:F0} MB; ORT intra-op threads {threads}; load: {File.ReadAllText("/proc/loadavg").Trim()}");
var random = new Random(7);
if (args.Contains("--eager"))
{
    EagerRows();
    Directory.Delete(dir, recursive: true);
    return;
}
var options = new ExportOptions { Mode = OnnxExportMode.Base, WeightType = dtype, ExternalData = OnnxExternalData.Always };
string genaiDir = Path.Combine(dir, "genai");
string tokenizerDir = Path.Combine(FindRepoRoot(), "models", "tiny-llama");
GenAiExporter.Export(model, tokenizerDir, genaiDir, options);
string noCachePath = Path.Combine(dir, "nocache.onnx");
OnnxExporter.Export(model, noCachePath, options);

using var sessionOptions = new SessionOptions { IntraOpNumThreads = threads, LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR };
using var cached = new InferenceSession(Path.Combine(genaiDir, GenAiExporter.ModelFileName), sessionOptions);
using var full = new InferenceSession(noCachePath, sessionOptions);
Console.WriteLine();
Console.WriteLine("| context | with cache: tokens/s (median, range) | recompute: tokens/s (median, range) | cache / recompute |");
Console.WriteLine("|---|---|---|---|");
var cachedTps = new Dictionary<int, double>();
foreach (int length in lengths)
{
    long[] prompt = [.. Enumerable.Range(0, length).Select(_ => (long)random.Next(3, vocab - 1))];
    var withCache = new List<double>();
    var recompute = new List<double>();
    for (int t = 0; t < trials; t++)
    {
        withCache.Add(CachedTokensPerSecond(cached, prompt, steps));
        recompute.Add(RecomputeTokensPerSecond(full, prompt, Math.Max(2, steps / 4)));
    }
    double a = Median(withCache), b = Median(recompute);
    cachedTps[length] = a;
    Console.WriteLine(string.Create(inv, $"| {length} | {a:F1} ({withCache.Min():F1}–{withCache.Max():F1}) | {b:F2} ({recompute.Min():F2}–{recompute.Max():F2}) | {a / b:F1}× |"));
}

var copies = new List<double>();
for (int t = 0; t < trials; t++)
{
    copies.Add(CopyBytesPerSecond(1L << 30));
}
double copy = Median(copies);
double shortest = cachedTps[lengths.Min()];
Console.WriteLine();
Console.WriteLine(string.Create(inv, $"copy bandwidth (memcpy of 1 GiB, bytes copied per second): median {copy / 1e9:F2} GB/s ({copies.Min() / 1e9:F2}–{copies.Max() / 1e9:F2})"));
Console.WriteLine(string.Create(inv, $"achieved weight bytes/s at context {lengths.Min()}, batch 1: {weightBytes * shortest / 1e9:F2} GB/s = {weightBytes * shortest / copy:F2} of the copy bandwidth"));

// GenAI vs our loop, same graph and prompt: per-token latency of 'steps' greedy tokens after a prompt of the shortest length.
using (new OgaHandle())
{
    using var genai = GenAiGenerator.Open(genaiDir);
    long[] prompt = [.. Enumerable.Range(0, lengths.Min()).Select(_ => (long)random.Next(3, vocab - 1))];
    var genAiMs = new List<double>();
    var ownMs = new List<double>();
    for (int t = 0; t < trials; t++)
    {
        var result = genai.Generate(prompt.Select(x => (int)x).ToArray(), new GenerationOptions { MaxNewTokens = steps });
        genAiMs.Add(Median(result.TokenMs));
        ownMs.Add(1000.0 / CachedTokensPerSecond(cached, prompt, steps));
    }
    Console.WriteLine(string.Create(inv, $"per-token decode at context {lengths.Min()}: ONNX Runtime GenAI {Median(genAiMs):F2} ms ({genAiMs.Min():F2}–{genAiMs.Max():F2}), own ORT loop {Median(ownMs):F2} ms ({ownMs.Min():F2}–{ownMs.Max():F2}); GenAI / own {Median(genAiMs) / Median(ownMs):F2}"));
    Console.WriteLine("(GenAI runs with its default session options; the own loop with the intra-op threads above.)");
}
Directory.Delete(dir, recursive: true);

// The TorchSharp generator (fp32, greedy), alternating trial by trial: with its cache ('steps' decode steps after the
// prefill) and recomputing the whole sequence (fewer steps at this size); tokens/s over the steps after the first token.
void EagerRows()
{
    TorchSharp.torch.set_num_threads(threads);
    Console.WriteLine($"TorchSharp intra-op threads {threads}");
    Console.WriteLine();
    Console.WriteLine("| context | eager with cache: tokens/s (median, range) | eager recompute: tokens/s (median, range) | cache / recompute | prefill ms with cache (median) |");
    Console.WriteLine("|---|---|---|---|---|");
    using var withCache = new EagerGenerator(model, tokenizer: null);
    using var withoutCache = new EagerGenerator(model, tokenizer: null, useKeyValueCache: false);
    // Warm-up (libtorch's first calls allocate and pick kernels), not measured.
    withCache.Generate([3, 4, 5, 6], new GenerationOptions { MaxNewTokens = 3 });
    withoutCache.Generate([3, 4, 5, 6], new GenerationOptions { MaxNewTokens = 3 });
    foreach (int length in lengths)
    {
        int[] prompt = [.. Enumerable.Range(0, length).Select(_ => random.Next(3, vocab - 1))];
        var cachedRuns = new List<double>();
        var recomputeRuns = new List<double>();
        var prefill = new List<double>();
        for (int t = 0; t < trials; t++)
        {
            var a = withCache.Generate(prompt, new GenerationOptions { MaxNewTokens = steps + 1 });
            cachedRuns.Add(a.TokenMs.Count / a.TokenMs.Sum() * 1000);
            prefill.Add(a.TimeToFirstTokenMs);
            var b = withoutCache.Generate(prompt, new GenerationOptions { MaxNewTokens = Math.Max(2, steps / 4) + 1 });
            recomputeRuns.Add(b.TokenMs.Count / b.TokenMs.Sum() * 1000);
        }
        double x = Median(cachedRuns), y = Median(recomputeRuns);
        Console.WriteLine(string.Create(inv, $"| {length} | {x:F2} ({cachedRuns.Min():F2}–{cachedRuns.Max():F2}) | {y:F3} ({recomputeRuns.Min():F3}–{recomputeRuns.Max():F3}) | {x / y:F1}× | {Median(prefill):F0} |"));
    }
    Console.WriteLine($"load at the end: {File.ReadAllText("/proc/loadavg").Trim()}");
}

// Prefill the prompt, then 'steps' single-token decode steps feeding back present as past; tokens/s of the decode steps.
double CachedTokensPerSecond(InferenceSession session, long[] prompt, int count)
{
    var kvType = dtype == DType.F16 ? TensorElementType.Float16 : TensorElementType.Float;
    long[] emptyShape = [1, config.NumKeyValueHeads, 0, config.HeadDim];
    var past = Enumerable.Range(0, 2 * layers).Select(_ => OrtValue.CreateAllocatedTensorValue(OrtAllocator.DefaultInstance, kvType, emptyShape)).ToList();
    var outputNames = new List<string> { "logits" };
    for (int i = 0; i < layers; i++)
    {
        outputNames.Add(LlamaForCausalLM.PresentKeyName(i));
        outputNames.Add(LlamaForCausalLM.PresentValueName(i));
    }
    long[] step = prompt;
    int total = prompt.Length;
    var clock = new Stopwatch();
    for (int s = 0; s <= count; s++)
    {
        if (s == 1)
        {
            clock.Start();
        }
        using var ids = OrtValue.CreateTensorValueFromMemory(step, [1, step.Length]);
        using var mask = OrtValue.CreateTensorValueFromMemory(Enumerable.Repeat(1L, total).ToArray(), [1, total]);
        using var positions = OrtValue.CreateTensorValueFromMemory(Enumerable.Range(total - step.Length, step.Length).Select(p => (long)p).ToArray(), [1, step.Length]);
        var feeds = new Dictionary<string, OrtValue> { ["input_ids"] = ids, ["attention_mask"] = mask, ["position_ids"] = positions };
        for (int i = 0; i < layers; i++)
        {
            feeds[LlamaForCausalLM.PastKeyName(i)] = past[2 * i];
            feeds[LlamaForCausalLM.PastValueName(i)] = past[(2 * i) + 1];
        }
        using var runOptions = new RunOptions();
        var results = session.Run(runOptions, feeds, outputNames);
        long next = ArgMaxLast(results[0]);
        results[0].Dispose();
        foreach (var old in past)
        {
            old.Dispose();
        }
        past = [.. results.Skip(1)];
        step = [next];
        total++;
    }
    clock.Stop();
    foreach (var value in past)
    {
        value.Dispose();
    }
    return count / clock.Elapsed.TotalSeconds;
}

// Each step runs the whole sequence so far through the no-cache graph.
double RecomputeTokensPerSecond(InferenceSession session, long[] prompt, int count)
{
    var sequence = prompt.ToList();
    var clock = Stopwatch.StartNew();
    for (int s = 0; s < count; s++)
    {
        using var ids = OrtValue.CreateTensorValueFromMemory(sequence.ToArray(), [1, sequence.Count]);
        using var mask = OrtValue.CreateTensorValueFromMemory(Enumerable.Repeat(1L, sequence.Count).ToArray(), [1, sequence.Count]);
        using var runOptions = new RunOptions();
        using var results = session.Run(runOptions, new Dictionary<string, OrtValue> { ["input_ids"] = ids, ["attention_mask"] = mask }, ["logits"]);
        sequence.Add(ArgMaxLast(results[0]));
    }
    return count / clock.Elapsed.TotalSeconds;
}

long ArgMaxLast(OrtValue logits)
{
    var row = logits.GetTensorDataAsSpan<float>()[^vocab..];
    int best = 0;
    for (int i = 1; i < row.Length; i++)
    {
        if (row[i] > row[best])
        {
            best = i;
        }
    }
    return best;
}

static double CopyBytesPerSecond(long bytes)
{
    byte[] source = GC.AllocateUninitializedArray<byte>(checked((int)Math.Min(bytes, Array.MaxLength)));
    byte[] target = GC.AllocateUninitializedArray<byte>(source.Length);
    Random.Shared.NextBytes(source.AsSpan(0, 1 << 20));
    source.AsSpan().CopyTo(target);
    var clock = Stopwatch.StartNew();
    source.AsSpan().CopyTo(target);
    return source.Length / clock.Elapsed.TotalSeconds;
}

static double Median(IEnumerable<double> values)
{
    var sorted = values.Order().ToArray();
    return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[(sorted.Length / 2) - 1] + sorted[sorted.Length / 2]) / 2;
}

int IntArg(string name, int fallback) => int.Parse(StringArg(name, fallback.ToString(inv)), inv);

string StringArg(string name, string fallback)
{
    int i = Array.IndexOf(args, name);
    return i >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;
}

static string FindRepoRoot()
{
    for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
    {
        if (File.Exists(Path.Combine(d.FullName, "OnnxLora.sln")))
        {
            return d.FullName;
        }
    }
    throw new InvalidOperationException("OnnxLora.sln not found");
}
