using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using OnnxLora.Core;
using OnnxLora.Core.Onnx;
using OnnxLora.Core.Peft;
using OnnxLora.Core.Safetensors;
using OnnxLora.Export;
using OnnxLora.Merge;
using OnnxLora.Models.Onnx;
using OnnxLora.Models.Peft;

// Export of a checkpoint to ONNX (merged mode, external data) side by side with File.Copy of the checkpoint's
// safetensors files, each trial in its own child process so that its peak resident set (VmHWM) is its own.
// Trials are interleaved A B [C] A B [C]; C (optional) is the in-memory exporter (TorchSharp model loaded with its
// weights, adapter attached, OnnxExporter.Export), the way export worked before it streamed.
//
//   dotnet run -c Release --project bench/ExportBench -- [--trials 5] [--dir /tmp/exportbench] [--out docs/benchmarks-export.md]
//       [--layers 22] [--dtype fp16|fp32] [--in-memory] [--base] [--model DIR --adapter DIR]
//   Without --model a LLaMA-shaped fp16 checkpoint (hidden 2048, intermediate 5632, 32/4 heads, vocab 32000, --layers
//   layers: TinyLlama-1.1B's shapes) and a LoRA r=16 adapter on all 7 projections are generated under --dir. With --model
//   (e.g. an 8B-shaped folder made by bench/MergeBench) and --adapter, those are used as they are and left in place.
//   --base exports without an adapter (no merge: the streaming alone).
//   (child modes: export <model> <adapter|-> <out.onnx> <fp16|fp32> | memory <model> <adapter> <out.onnx> <fp16|fp32> | copy <model> <outdir>)
var inv = CultureInfo.InvariantCulture;
if (args.Length > 0 && args[0] is "export" or "memory" or "copy")
{
    var sw = Stopwatch.StartNew();
    if (args[0] == "copy")
    {
        Directory.CreateDirectory(args[2]);
        foreach (string file in Directory.GetFiles(args[1], "*.safetensors"))
        {
            string dest = Path.Combine(args[2], Path.GetFileName(file));
            File.Copy(file, dest);
            using var fs = new FileStream(dest, FileMode.Open, FileAccess.ReadWrite);
            fs.Flush(flushToDisk: true);
        }
    }
    else
    {
        var options = ExportOptions.Default with
        {
            Mode = args[2] == "-" ? OnnxExportMode.Base : OnnxExportMode.Merged,
            WeightType = args[4] == "fp32" ? DType.F32 : DType.F16,
            ExternalData = OnnxExternalData.Always,
        };
        if (args[0] == "export")
        {
            using var adapter = args[2] == "-" ? null : PeftAdapter.Load(args[2]);
            OnnxExporter.ExportPretrained(args[1], adapter is null ? [] : [new WeightedAdapter(adapter)], args[3], options);
        }
        else
        {
            using var model = PretrainedModel.Load(args[1]);
            if (args[2] != "-")
            {
                PeftModelAdapter.Attach(model, args[2]);
            }
            OnnxExporter.Export(model, args[3], options);
        }
    }
    sw.Stop();
    Console.WriteLine(string.Create(inv, $"{sw.Elapsed.TotalSeconds:F3} {VmHwmKb()}"));
    return 0;
}

int trials = Arg("--trials", 5);
int layers = Arg("--layers", 22);
string root = ArgS("--dir", "/tmp/exportbench");
string report = ArgS("--out", "docs/benchmarks-export.md");
string dtype = ArgS("--dtype", "fp16");
bool inMemory = args.Contains("--in-memory");
bool baseMode = args.Contains("--base");
string? givenModel = ArgS("--model", null!);
string? givenAdapter = ArgS("--adapter", null!);

if (Directory.Exists(root))
{
    Directory.Delete(root, recursive: true);
}
Directory.CreateDirectory(root);
try
{
    string model = givenModel ?? Path.Combine(root, "model");
    string adapterDir = baseMode ? "-" : givenAdapter ?? Path.Combine(root, "adapter");
    if (givenModel is null)
    {
        var genWatch = Stopwatch.StartNew();
        WriteCheckpoint(model, layers);
        if (!baseMode)
        {
            WriteAdapter(adapterDir, layers);
        }
        Console.WriteLine(string.Create(inv, $"generated in {genWatch.Elapsed.TotalSeconds:F1} s"));
    }
    var files = Directory.GetFiles(model, "*.safetensors");
    long checkpointBytes = files.Sum(f => new FileInfo(f).Length);
    var config = JsonNode.Parse(File.ReadAllText(Path.Combine(model, "config.json")))!;
    long largest;
    using (var checkpoint = SafetensorsCheckpoint.Open(model))
    {
        largest = checkpoint.Tensors.Max(t => t.ByteLength);
    }
    Console.WriteLine(string.Create(inv, $"checkpoint: {checkpointBytes / 1e9:F2} GB in {files.Length} file(s), largest tensor {largest / 1e6:F0} MB"));

    var export = new List<(double Seconds, long Kb)>();
    var copy = new List<(double Seconds, long Kb)>();
    var memory = new List<(double Seconds, long Kb)>();
    long written = 0;
    string loadBefore = File.ReadAllText("/proc/loadavg").Trim();
    for (int t = 0; t < trials; t++)
    {
        string onnx = Path.Combine(root, "out", "model.onnx");
        Directory.CreateDirectory(Path.GetDirectoryName(onnx)!);
        export.Add(Child("export", model, adapterDir, onnx, dtype));
        written = new FileInfo(onnx).Length + new FileInfo(onnx + ".data").Length;
        Directory.Delete(Path.Combine(root, "out"), recursive: true);
        copy.Add(Child("copy", model, Path.Combine(root, "out-copy")));
        Directory.Delete(Path.Combine(root, "out-copy"), recursive: true);
        string line = string.Create(inv, $"trial {t + 1}: export {export[^1].Seconds:F2} s / {export[^1].Kb / 1024.0:F0} MiB, File.Copy {copy[^1].Seconds:F2} s / {copy[^1].Kb / 1024.0:F0} MiB");
        if (inMemory)
        {
            Directory.CreateDirectory(Path.Combine(root, "out-memory"));
            memory.Add(Child("memory", model, adapterDir, Path.Combine(root, "out-memory", "model.onnx"), dtype));
            Directory.Delete(Path.Combine(root, "out-memory"), recursive: true);
            line += string.Create(inv, $", in-memory export {memory[^1].Seconds:F2} s / {memory[^1].Kb / 1024.0:F0} MiB");
        }
        Console.WriteLine(line);
    }
    string loadAfter = File.ReadAllText("/proc/loadavg").Trim();

    var sb = new StringBuilder();
    sb.AppendLine("# Export benchmark (bench/ExportBench)");
    sb.AppendLine();
    sb.AppendLine(string.Create(inv, $"Checkpoint: `{(givenModel is null ? "generated" : givenModel)}`, LLaMA-shaped (hidden {config["hidden_size"]}, intermediate {config["intermediate_size"]}, {config["num_hidden_layers"]} layers, {config["num_attention_heads"]}/{config["num_key_value_heads"]} heads, vocab {config["vocab_size"]}), {checkpointBytes / 1e9:F2} GB of safetensors in {files.Length} file(s), largest tensor {largest / 1e6:F0} MB. Adapter: `{(givenAdapter is null ? "generated" : givenAdapter)}`{(givenAdapter is null ? ", LoRA r=16 fp32 on all 7 projections of every layer" : "")}. Export: {(baseMode ? "base" : "merged")}, {dtype}, external data; {written / 1e9:F2} GB written (.onnx + .onnx.data)."));
    sb.AppendLine();
    sb.AppendLine("Method: each trial runs in its own child process (`ExportBench export|copy|memory`), timed from inside the child. A = `OnnxExporter.ExportPretrained` (config + safetensors headers → meta-device modules → graph; each weight read from the checkpoint, merged W + ΔW where the adapter targets it, converted, transposed in blocks and written to the data file; fsync and rename), B = `File.Copy` of the checkpoint's safetensors files + fsync (in-kernel copy_file_range on Linux)" + (inMemory ? ", C = the in-memory exporter (TorchSharp model with its weights in fp32, adapter attached, `OnnxExporter.Export`: how export worked before it streamed)" : "") + $", interleaved A B{(inMemory ? " C" : "")}; outputs deleted after each trial; the checkpoint is in the page cache after the first trial. Peak memory is the child's VmHWM from /proc/self/status (it includes the .NET runtime and libtorch, ~170 MiB for a tiny export).");
    sb.AppendLine(string.Create(inv, $"Machine: {Environment.ProcessorCount} cores, {GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / 1e9:F0} GB RAM, ext4 virtual disk, .NET {Environment.Version}, {DateTime.UtcNow:yyyy-MM-dd}. Shared with other jobs: /proc/loadavg before `{loadBefore}`, after `{loadAfter}`, so absolute times are noisy; compare within a trial."));
    sb.AppendLine();
    sb.AppendLine("| | median time (s) | min–max (s) | median peak RSS (MiB) | min–max (MiB) |");
    sb.AppendLine("|---|---|---|---|---|");
    sb.AppendLine(Row("A export, streamed (ExportPretrained)", export));
    sb.AppendLine(Row("B File.Copy of the checkpoint", copy));
    if (inMemory)
    {
        sb.AppendLine(Row("C export, in memory (Export of a loaded model)", memory));
    }
    sb.AppendLine();
    string ratios = string.Join(", ", export.Zip(copy, (e, c) => (e.Seconds / c.Seconds).ToString("F2", inv)));
    sb.Append(string.Create(inv, $"Ratio of medians: export / File.Copy time {Median(export.Select(m => m.Seconds)) / Median(copy.Select(c => c.Seconds)):F2}× (per-trial ratios {ratios})."));
    sb.AppendLine(inMemory ? string.Create(inv, $" In-memory / streamed peak RSS {Median(memory.Select(m => (double)m.Kb)) / Median(export.Select(m => (double)m.Kb)):F1}×.") : "");
    sb.AppendLine();
    sb.AppendLine("Raw trials (s, MiB): export " + string.Join("; ", export.Select(m => string.Create(inv, $"{m.Seconds:F2}, {m.Kb / 1024.0:F0}")))
        + " | copy " + string.Join("; ", copy.Select(c => string.Create(inv, $"{c.Seconds:F2}, {c.Kb / 1024.0:F0}")))
        + (inMemory ? " | in-memory " + string.Join("; ", memory.Select(c => string.Create(inv, $"{c.Seconds:F2}, {c.Kb / 1024.0:F0}"))) : ""));
    Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(report))!);
    File.WriteAllText(report, sb.ToString());
    Console.WriteLine(sb.ToString());
}
finally
{
    Directory.Delete(root, recursive: true);
}
return 0;

string Row(string name, List<(double Seconds, long Kb)> r) => string.Create(inv,
    $"| {name} | {Median(r.Select(x => x.Seconds)):F2} | {r.Min(x => x.Seconds):F2}–{r.Max(x => x.Seconds):F2} | {Median(r.Select(x => x.Kb / 1024.0)):F0} | {r.Min(x => x.Kb) / 1024.0:F0}–{r.Max(x => x.Kb) / 1024.0:F0} |");

static double Median(IEnumerable<double> values)
{
    var v = values.Order().ToArray();
    return v.Length % 2 == 1 ? v[v.Length / 2] : (v[v.Length / 2 - 1] + v[v.Length / 2]) / 2;
}

(double Seconds, long Kb) Child(params string[] childArgs)
{
    var psi = new ProcessStartInfo(Environment.ProcessPath!) { RedirectStandardOutput = true, RedirectStandardError = true };
    if (Path.GetFileNameWithoutExtension(Environment.ProcessPath!) == "dotnet")
    {
        psi.ArgumentList.Add(typeof(Program).Assembly.Location);
    }
    foreach (string a in childArgs)
    {
        psi.ArgumentList.Add(a);
    }
    using var p = Process.Start(psi)!;
    string stdout = p.StandardOutput.ReadToEnd();
    string stderr = p.StandardError.ReadToEnd();
    p.WaitForExit();
    if (p.ExitCode != 0)
    {
        throw new InvalidOperationException($"child {string.Join(' ', childArgs)} failed: {stderr}");
    }
    var parts = stdout.Trim().Split('\n')[^1].Split(' ');
    return (double.Parse(parts[0], inv), long.Parse(parts[1], inv));
}

static long VmHwmKb()
{
    foreach (string line in File.ReadLines("/proc/self/status"))
    {
        if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
        {
            return long.Parse(line[6..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
        }
    }
    return -1;
}

// TinyLlama-1.1B's shapes; fp16 values from a linear congruential generator (weights ~N-ish(0, 0.02), norms 1).
void WriteCheckpoint(string directory, int layerCount)
{
    const int Hidden = 2048, Intermediate = 5632, Heads = 32, KvHeads = 4, Vocab = 32000;
    int kv = KvHeads * (Hidden / Heads);
    Directory.CreateDirectory(directory);
    var specs = new List<TensorSpec> { new("model.embed_tokens.weight", DType.F16, [Vocab, Hidden]) };
    for (int i = 0; i < layerCount; i++)
    {
        string p = $"model.layers.{i}.";
        specs.Add(new(p + "self_attn.q_proj.weight", DType.F16, [Hidden, Hidden]));
        specs.Add(new(p + "self_attn.k_proj.weight", DType.F16, [kv, Hidden]));
        specs.Add(new(p + "self_attn.v_proj.weight", DType.F16, [kv, Hidden]));
        specs.Add(new(p + "self_attn.o_proj.weight", DType.F16, [Hidden, Hidden]));
        specs.Add(new(p + "mlp.gate_proj.weight", DType.F16, [Intermediate, Hidden]));
        specs.Add(new(p + "mlp.up_proj.weight", DType.F16, [Intermediate, Hidden]));
        specs.Add(new(p + "mlp.down_proj.weight", DType.F16, [Hidden, Intermediate]));
        specs.Add(new(p + "input_layernorm.weight", DType.F16, [Hidden]));
        specs.Add(new(p + "post_attention_layernorm.weight", DType.F16, [Hidden]));
    }
    specs.Add(new("model.norm.weight", DType.F16, [Hidden]));
    specs.Add(new("lm_head.weight", DType.F16, [Vocab, Hidden]));
    uint state = 1;
    using (var writer = SafetensorsWriter.Create(Path.Combine(directory, "model.safetensors"), specs, new Dictionary<string, string> { ["format"] = "pt" }))
    {
        foreach (var spec in specs)
        {
            var values = Values(checked((int)spec.ElementCount), ref state, spec.Name.EndsWith("norm.weight", StringComparison.Ordinal) ? 1f : 0f);
            var bytes = new byte[values.Length * 2];
            FloatCodec.Encode(DType.F16, values, bytes);
            writer.Write(spec.Name, bytes);
        }
        writer.Commit();
    }
    var config = new JsonObject
    {
        ["model_type"] = "llama",
        ["architectures"] = new JsonArray("LlamaForCausalLM"),
        ["vocab_size"] = Vocab,
        ["hidden_size"] = Hidden,
        ["intermediate_size"] = Intermediate,
        ["num_hidden_layers"] = layerCount,
        ["num_attention_heads"] = Heads,
        ["num_key_value_heads"] = KvHeads,
        ["max_position_embeddings"] = 2048,
        ["rms_norm_eps"] = 1e-5,
        ["tie_word_embeddings"] = false,
        ["torch_dtype"] = "float16",
    };
    File.WriteAllText(Path.Combine(directory, "config.json"), config.ToJsonString());
}

void WriteAdapter(string directory, int layerCount)
{
    const int Hidden = 2048, Intermediate = 5632, Heads = 32, KvHeads = 4, Rank = 16;
    int kv = KvHeads * (Hidden / Heads);
    var shapes = new (string Module, int In, int Out)[]
    {
        ("self_attn.q_proj", Hidden, Hidden), ("self_attn.k_proj", Hidden, kv), ("self_attn.v_proj", Hidden, kv), ("self_attn.o_proj", Hidden, Hidden),
        ("mlp.gate_proj", Hidden, Intermediate), ("mlp.up_proj", Hidden, Intermediate), ("mlp.down_proj", Intermediate, Hidden),
    };
    var tensors = new List<(TensorSpec Spec, ReadOnlyMemory<byte> Data)>();
    uint state = 99;
    for (int i = 0; i < layerCount; i++)
    {
        foreach (var (module, inF, outF) in shapes)
        {
            string key = $"{PeftAdapter.KeyPrefix}model.layers.{i}.{module}";
            tensors.Add(PeftAdapter.EncodeTensor(key + ".lora_A.weight", [Rank, inF], Values(Rank * inF, ref state, 0)));
            tensors.Add(PeftAdapter.EncodeTensor(key + ".lora_B.weight", [outF, Rank], Values(outF * Rank, ref state, 0)));
        }
    }
    PeftAdapter.Save(directory, new PeftAdapterConfig
    {
        R = Rank,
        Alpha = 32,
        TargetModules = TargetModules.FromList(["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]),
    }, tensors);
}

static float[] Values(int count, ref uint state, float offset)
{
    var values = new float[count];
    for (int i = 0; i < count; i++)
    {
        state = (state * 1664525) + 1013904223;
        values[i] = offset + (((state >> 8) / (float)(1 << 24)) - 0.5f) * 0.07f;
    }
    return values;
}

int Arg(string name, int fallback) => Array.IndexOf(args, name) is int i and >= 0 ? int.Parse(args[i + 1], inv) : fallback;

string ArgS(string name, string fallback) => Array.IndexOf(args, name) is int i and >= 0 ? args[i + 1] : fallback;
