using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using OnnxLora.Bench;
using OnnxLora.Core;
using OnnxLora.Core.Onnx;
using OnnxLora.Core.Peft;
using OnnxLora.Core.Safetensors;
using OnnxLora.Export;
using OnnxLora.Merge;
using OnnxLora.Models.Onnx;
using OnnxLora.Models.Peft;
using OnnxLora.Testing;

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
            var gc = GC.GetGCMemoryInfo();
            Console.Error.WriteLine($"allocated {GC.GetTotalAllocatedBytes(true) / 1e6:F0} MB, gen2 GCs {GC.CollectionCount(2)}, heap {gc.HeapSizeBytes / 1e6:F0} MB, committed {gc.TotalCommittedBytes / 1e6:F0} MB, memory load at the last GC {gc.MemoryLoadBytes / 1e6:F0} MB");
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
    Console.WriteLine(ChildTrial.Report(sw.Elapsed.TotalSeconds));
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
        // TinyLlama-1.1B's shapes with --layers layers; the adapter targets all 7 projections.
        var shape = new SyntheticLlama.Shape(Hidden: 2048, Intermediate: 5632, Layers: layers, Heads: 32, KvHeads: 4, Vocab: 32000);
        SyntheticLlama.WriteCheckpoint(model, shape, DType.F16);
        if (!baseMode)
        {
            SyntheticLlama.WriteAdapter(adapterDir, shape, rank: 16, alpha: 32, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]);
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
        export.Add(ChildTrial.Run("export", model, adapterDir, onnx, dtype));
        written = new FileInfo(onnx).Length + new FileInfo(onnx + ".data").Length;
        Directory.Delete(Path.Combine(root, "out"), recursive: true);
        copy.Add(ChildTrial.Run("copy", model, Path.Combine(root, "out-copy")));
        Directory.Delete(Path.Combine(root, "out-copy"), recursive: true);
        string line = string.Create(inv, $"trial {t + 1}: export {export[^1].Seconds:F2} s / {export[^1].Kb / 1024.0:F0} MiB, File.Copy {copy[^1].Seconds:F2} s / {copy[^1].Kb / 1024.0:F0} MiB");
        if (inMemory)
        {
            Directory.CreateDirectory(Path.Combine(root, "out-memory"));
            memory.Add(ChildTrial.Run("memory", model, adapterDir, Path.Combine(root, "out-memory", "model.onnx"), dtype));
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
    sb.AppendLine("Method: each trial runs in its own child process (`ExportBench export|copy|memory`), timed from inside the child. A = `OnnxExporter.ExportPretrained` (config + safetensors headers → meta-device modules → graph; each weight read from the checkpoint, merged W + ΔW where the adapter targets it, converted, transposed (a merged tensor in bands of output rows, written in order; others in blocks of source rows), written behind on a writer thread, same-type untransposed tensors copied by the kernel, the next tensor read ahead; fsync and rename), B = `File.Copy` of the checkpoint's safetensors files + fsync (in-kernel copy_file_range on Linux)" + (inMemory ? ", C = the in-memory exporter (TorchSharp model with its weights in fp32, adapter attached, `OnnxExporter.Export`: how export worked before it streamed)" : "") + $", interleaved A B{(inMemory ? " C" : "")}; outputs deleted after each trial; the checkpoint stays in the page cache between trials when it and the output fit there (not at 16 GB on a 24 GB machine). Peak memory is the child's VmHWM from /proc/self/status (it includes the .NET runtime and libtorch, ~170 MiB for a tiny export).");
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
    sb.Append(string.Create(inv, $"Ratio of medians: export / File.Copy time {ChildTrial.Median(export.Select(m => m.Seconds)) / ChildTrial.Median(copy.Select(c => c.Seconds)):F2}× (per-trial ratios {ratios})."));
    sb.AppendLine(inMemory ? string.Create(inv, $" In-memory / streamed peak RSS {ChildTrial.Median(memory.Select(m => (double)m.Kb)) / ChildTrial.Median(export.Select(m => (double)m.Kb)):F1}×.") : "");
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
    $"| {name} | {ChildTrial.Median(r.Select(x => x.Seconds)):F2} | {r.Min(x => x.Seconds):F2}–{r.Max(x => x.Seconds):F2} | {ChildTrial.Median(r.Select(x => x.Kb / 1024.0)):F0} | {r.Min(x => x.Kb) / 1024.0:F0}–{r.Max(x => x.Kb) / 1024.0:F0} |");

int Arg(string name, int fallback) => Array.IndexOf(args, name) is int i and >= 0 ? int.Parse(args[i + 1], inv) : fallback;

string ArgS(string name, string fallback) => Array.IndexOf(args, name) is int i and >= 0 ? args[i + 1] : fallback;
