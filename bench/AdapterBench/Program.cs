using System.Diagnostics;
using System.Globalization;
using Microsoft.ML.OnnxRuntime;
using OnnxLora.Core;
using OnnxLora.Core.Onnx;
using OnnxLora.Core.Peft;
using OnnxLora.Core.Safetensors;
using OnnxLora.Export;
using OnnxLora.Models;
using OnnxLora.Models.Llama;
using OnnxLora.Models.Onnx;
using OnnxLora.Models.Peft;

// Latency of ONNX Runtime's LoRA adapters against merged models, side by side in one process: a LLaMA-shaped model
// (weights dominate: hidden ≥ 1024), adapters of three ranks on all seven projections. Per interleaved round (order
// rotated) it runs the base model, each merged model, and the one adapter-ready graph with each .onnx_adapter active
// (one InferenceSession, the adapter chosen per run). Then the cost of switching: after three runs with adapter X,
// the first run with adapter Y against Y's steady runs.
//   dotnet run -c Release --project bench/AdapterBench -- [--hidden 1024] [--layers 4] [--seq 128] [--rounds 20] [--threads 1] [--dir /tmp/x]
var culture = CultureInfo.InvariantCulture;
int hidden = IntArg("--hidden", 1024), layers = IntArg("--layers", 4), seq = IntArg("--seq", 128), rounds = IntArg("--rounds", 20), threads = IntArg("--threads", 1);
int[] ranks = [8, 16, 64];
string dir = StringArg("--dir", Path.Combine(Path.GetTempPath(), "onnxlora-adapterbench"));
Directory.CreateDirectory(dir);

var config = TinyConfigs.Llama() with
{
    VocabSize = 4096,
    HiddenSize = hidden,
    IntermediateSize = hidden * 11 / 4,
    NumHiddenLayers = layers,
    NumAttentionHeads = hidden / 64,
    NumKeyValueHeads = hidden / 256,
    MaxPositionEmbeddings = Math.Max(2048, seq),
};
string[] targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];
Console.WriteLine($"model: llama hidden {hidden}, intermediate {config.IntermediateSize}, layers {layers}, heads {config.NumAttentionHeads}/{config.NumKeyValueHeads}, vocab {config.VocabSize}; "
    + $"batch 1 × seq {seq}; {threads} intra-op thread(s); adapters r = {string.Join(", ", ranks)} on {string.Join(",", targets)}");

string basePath = Path.Combine(dir, "base.onnx");
using (var model = LlamaForCausalLM.CreateRandom(config, seed: 1))
{
    OnnxExporter.Export(model, basePath, new ExportOptions { Mode = OnnxExportMode.Base, Overwrite = true });
}
var adapterDirs = new Dictionary<int, string>();
var mergedPaths = new Dictionary<int, string>();
var adapterFiles = new Dictionary<int, string>();
string adaptersPath = Path.Combine(dir, "adapters.onnx");
foreach (int r in ranks)
{
    adapterDirs[r] = WriteAdapter(Path.Combine(dir, $"r{r}"), r, seed: r);
    using var model = LlamaForCausalLM.CreateRandom(config, seed: 1);
    PeftModelAdapter.Attach(model, adapterDirs[r]);
    mergedPaths[r] = Path.Combine(dir, $"merged-r{r}.onnx");
    OnnxExporter.Export(model, mergedPaths[r], new ExportOptions { Mode = OnnxExportMode.Merged, Overwrite = true });
    if (r == ranks[0])
    {
        OnnxExporter.Export(model, adaptersPath, new ExportOptions { Mode = OnnxExportMode.Adapters, Overwrite = true });
    }
    using var peft = PeftAdapter.Load(adapterDirs[r]);
    adapterFiles[r] = Path.Combine(dir, $"r{r}{OnnxAdapterFile.Extension}");
    OnnxAdapterFile.WriteFromPeft(adapterFiles[r], peft, overwrite: true);
}

using var sessionOptions = new SessionOptions { IntraOpNumThreads = threads, InterOpNumThreads = 1, LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR };
var rng = new Random(3);
long[] ids = [.. Enumerable.Range(0, seq).Select(_ => (long)rng.Next(4, config.VocabSize))];
long[] mask = [.. Enumerable.Repeat(1L, seq)];
using var idsValue = OrtValue.CreateTensorValueFromMemory(ids, [1, seq]);
using var maskValue = OrtValue.CreateTensorValueFromMemory(mask, [1, seq]);

using var baseSession = new InferenceSession(basePath, sessionOptions);
var merged = ranks.ToDictionary(r => r, r => new InferenceSession(mergedPaths[r], sessionOptions));
using var adapterSession = new InferenceSession(adaptersPath, sessionOptions);
var adapters = ranks.ToDictionary(r => r, r => OrtLoraAdapter.Create(adapterFiles[r], null));
var runOptions = ranks.ToDictionary(r => r, r =>
{
    var o = new RunOptions();
    o.AddActiveLoraAdapter(adapters[r]);
    return o;
});
using var plainRun = new RunOptions();

float[] Logits(InferenceSession s, RunOptions o)
{
    using var outputs = s.Run(o, ["input_ids", "attention_mask"], [idsValue, maskValue], ["logits"]);
    return outputs[0].GetTensorDataAsSpan<float>().ToArray();
}
double Timed(InferenceSession s, RunOptions o)
{
    long t = Stopwatch.GetTimestamp();
    using var outputs = s.Run(o, ["input_ids", "attention_mask"], [idsValue, maskValue], ["logits"]);
    return Stopwatch.GetElapsedTime(t).TotalMilliseconds;
}

// Correctness first: each adapter active on the one graph against its merged model.
float[] baseLogits = Logits(baseSession, plainRun);
foreach (int r in ranks)
{
    float[] m = Logits(merged[r], plainRun);
    float[] a = Logits(adapterSession, runOptions[r]);
    Console.WriteLine($"r={r}: max |active − merged| = {MaxAbs(a, m):G3}; max |merged − base| = {MaxAbs(m, baseLogits):G3}");
}
Console.WriteLine($"no adapter: max |adapters graph − base| = {MaxAbs(Logits(adapterSession, plainRun), baseLogits):G3}");

// Interleaved latency.
var entries = new List<(string Name, Func<double> Run)> { ("base", () => Timed(baseSession, plainRun)) };
foreach (int r in ranks)
{
    entries.Add(($"merged r={r}", () => Timed(merged[r], plainRun)));
    entries.Add(($"active r={r}", () => Timed(adapterSession, runOptions[r])));
}
entries.Add(("adapters graph, none active", () => Timed(adapterSession, plainRun)));
for (int w = 0; w < 3; w++)
{
    entries.ForEach(e => e.Run());
}
var samples = entries.Select(_ => new List<double>()).ToArray();
for (int round = 0; round < rounds; round++)
{
    for (int j = 0; j < entries.Count; j++)
    {
        int k = (round + j) % entries.Count;
        samples[k].Add(entries[k].Run());
    }
}
Console.WriteLine();
Console.WriteLine($"| model | median ms | p10–p90 ms |");
Console.WriteLine("|---|---|---|");
for (int k = 0; k < entries.Count; k++)
{
    Console.WriteLine($"| {entries[k].Name} | {Median(samples[k]):F2} | {Percentile(samples[k], 10):F2}–{Percentile(samples[k], 90):F2} |");
}
Console.WriteLine();
Console.WriteLine("| ratio (per round) | median | p10–p90 |");
Console.WriteLine("|---|---|---|");
void Ratio(string name, int num, int den)
{
    var ratios = samples[num].Zip(samples[den], (a, b) => a / b).ToList();
    Console.WriteLine($"| {name} | {Median(ratios):F3} | {Percentile(ratios, 10):F3}–{Percentile(ratios, 90):F3} |");
}
int Index(string name) => entries.FindIndex(e => e.Name == name);
foreach (int r in ranks)
{
    Ratio($"active r={r} / merged r={r}", Index($"active r={r}"), Index($"merged r={r}"));
}
Ratio("merged r=16 / base", Index("merged r=16"), Index("base"));
Ratio("adapters graph none active / base", Index("adapters graph, none active"), Index("base"));

// Switching: X three times, then Y (the first run after the switch), then Y three times.
var switchCost = new List<double>();
for (int round = 0; round < rounds; round++)
{
    int x = ranks[round % ranks.Length], y = ranks[(round + 1) % ranks.Length];
    for (int i = 0; i < 3; i++)
    {
        Timed(adapterSession, runOptions[x]);
    }
    double first = Timed(adapterSession, runOptions[y]);
    var steady = Enumerable.Range(0, 3).Select(_ => Timed(adapterSession, runOptions[y])).ToList();
    switchCost.Add(first - Median(steady));
}
Console.WriteLine();
Console.WriteLine($"switch cost (first run after switching adapter − median of the next three): median {Median(switchCost):F2} ms, p10–p90 {Percentile(switchCost, 10):F2}–{Percentile(switchCost, 90):F2} ms over {rounds} switches");
Console.WriteLine($"adapter file sizes: {string.Join(", ", ranks.Select(r => $"r={r} {new FileInfo(adapterFiles[r]).Length / 1e6:F2} MB"))}; merged model {new FileInfo(mergedPaths[16]).Length / 1e6:F0} MB");
Console.WriteLine($"load average: {File.ReadAllText("/proc/loadavg").Trim()}");

foreach (var s in merged.Values)
{
    s.Dispose();
}
foreach (var o in runOptions.Values)
{
    o.Dispose();
}
foreach (var a in adapters.Values)
{
    a.Dispose();
}
return 0;

string WriteAdapter(string path, int rank, int seed)
{
    var r = new Random(seed);
    float[] Values(long n, double scale) => [.. Enumerable.Range(0, (int)n).Select(_ => (float)((r.NextDouble() * 2 - 1) * scale))];
    int kv = config.NumKeyValueHeads * (hidden / config.NumAttentionHeads);
    var shapes = new Dictionary<string, (int In, int Out)>
    {
        ["q_proj"] = (hidden, hidden),
        ["k_proj"] = (hidden, kv),
        ["v_proj"] = (hidden, kv),
        ["o_proj"] = (hidden, hidden),
        ["gate_proj"] = (hidden, config.IntermediateSize),
        ["up_proj"] = (hidden, config.IntermediateSize),
        ["down_proj"] = (config.IntermediateSize, hidden),
    };
    var tensors = new List<(TensorSpec, ReadOnlyMemory<byte>)>();
    for (int l = 0; l < layers; l++)
    {
        foreach (var (name, (inF, outF)) in shapes)
        {
            string module = $"model.layers.{l}.{(name is "gate_proj" or "up_proj" or "down_proj" ? "mlp" : "self_attn")}.{name}";
            tensors.Add(PeftAdapter.EncodeTensor(PeftAdapter.KeyFor(module, AdapterModuleKind.Lora, AdapterTensorRole.LoraA), [rank, inF], Values((long)rank * inF, 1 / Math.Sqrt(inF)), DType.F32));
            tensors.Add(PeftAdapter.EncodeTensor(PeftAdapter.KeyFor(module, AdapterModuleKind.Lora, AdapterTensorRole.LoraB), [outF, rank], Values((long)outF * rank, 0.01), DType.F32));
        }
    }
    if (Directory.Exists(path))
    {
        Directory.Delete(path, recursive: true);
    }
    PeftAdapter.Save(path, new PeftAdapterConfig { R = rank, Alpha = 2.0 * rank, TargetModules = TargetModules.FromList(targets) }, tensors);
    return path;
}

static double MaxAbs(float[] a, float[] b) => a.Zip(b, (x, y) => Math.Abs((double)x - y)).Max();

static double Median(List<double> v) => Percentile(v, 50);

static double Percentile(List<double> v, double p)
{
    var s = v.Order().ToList();
    double at = (s.Count - 1) * p / 100.0;
    int lo = (int)Math.Floor(at), hi = (int)Math.Ceiling(at);
    return s[lo] + ((s[hi] - s[lo]) * (at - lo));
}

int IntArg(string name, int fallback)
{
    int i = Array.IndexOf(args, name);
    return i >= 0 && i + 1 < args.Length ? int.Parse(args[i + 1], culture) : fallback;
}

string StringArg(string name, string fallback)
{
    int i = Array.IndexOf(args, name);
    return i >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;
}
