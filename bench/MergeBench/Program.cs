using System.Diagnostics;
using System.Globalization;
using System.Text;
using Onnx;
using OnnxLora.Bench;
using OnnxLora.Core;
using OnnxLora.Core.IO;
using OnnxLora.Core.Onnx;
using OnnxLora.Core.Peft;
using OnnxLora.Core.Safetensors;
using OnnxLora.Merge;
using OnnxLora.Merge.Onnx;

// Whole-pipeline benchmark at real model sizes: a Llama-3-8B-shaped fp16 checkpoint (hidden 4096, intermediate 14336,
// 32 heads / 8 KV heads, vocab 128256, untied embeddings; --layers scales it, 32 = the real 8B, ~16 GB) in ~5 GB
// safetensors shards, and a PEFT LoRA adapter r = 16 on all seven projections. Measured, each trial in its own child
// process (so its peak resident set, VmHWM, is its own), interleaved A B A B:
//   checkpoint merge (CheckpointMerger)  vs  File.Copy of the same files (+ fsync)
//   ONNX→ONNX merge (OnnxModelMerger) of a base model with external data written from the checkpoint  vs  File.Copy of it
// Cases run one after another, deleting between, so the disk holds at most an input and one output.
//
//   dotnet run -c Release --project bench/MergeBench -- [--layers 32] [--pairs 5] [--dir /tmp/mergebench] [--out docs/benchmarks-merge.md]
//       [--no-onnx] [--ckpt DIR --adapter DIR] [--onnx-base MODEL.onnx]
//   --ckpt/--adapter: use that checkpoint and adapter (e.g. from `generate`) instead of generating them; left in place.
//   --onnx-base: merge into that ONNX model (e.g. the exporter's base export of the checkpoint, whose MatMul weights are
//   stored transposed) instead of the stand-in graph written from the checkpoint; left in place.
//   (child modes, also usable alone on any model, e.g. one the exporter wrote:
//    merge <ckpt> <adapter> <out> | onnxmerge <model.onnx> <adapter> <out.onnx> | copy <dir> <out>;
//    and by hand: generate <dir> <layers> (writes <dir>/ckpt and <dir>/adapter) | profile <ckpt> <adapter> <scratch dir>: seconds per phase)

var inv = CultureInfo.InvariantCulture;
if (args.Length > 0 && args[0] == "profile")
{
    // Where a checkpoint merge's time goes, phase by phase over the whole checkpoint, each phase timed alone (nothing overlaps):
    // pread of the merged tensors, fp16→fp32 decode, ΔW (MergePlan.ApplyTo), fp32→fp16 encode, write of the merged bytes,
    // and the kernel copy of the untouched tensors. Output goes to <out> and is deleted.
    using var adapter = PeftAdapter.Load(args[2]);
    using var checkpoint = SafetensorsCheckpoint.Open(args[1]);
    var plan = MergePlan.Create([new WeightedAdapter(adapter)], checkpoint);
    double read = 0, decode = 0, delta = 0, encode = 0, write = 0, copy = 0;
    long mergedBytes = 0, copiedBytes = 0;
    Directory.CreateDirectory(args[3]);
    string outFile = Path.Combine(args[3], "profile.bin");
    using (var output = File.OpenHandle(outFile, FileMode.Create, FileAccess.ReadWrite))
    {
        long at = 0;
        foreach (var shard in checkpoint.Shards)
        {
            using var handle = File.OpenHandle(shard.Path, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.SequentialScan);
            foreach (var t in shard.Tensors)
            {
                var sw = Stopwatch.StartNew();
                if (!plan.Touches(t.Name))
                {
                    FileRange.Copy(handle, shard.DataStart + t.DataOffset, output, at, t.ByteLength);
                    copy += sw.Elapsed.TotalSeconds;
                    copiedBytes += t.ByteLength;
                    at += t.ByteLength;
                    continue;
                }
                byte[] bytes = new byte[t.ByteLength];
                FileRange.ReadExactly(handle, bytes, shard.DataStart + t.DataOffset);
                read += sw.Elapsed.TotalSeconds;
                sw.Restart();
                float[] values = new float[t.ElementCount];
                FloatCodec.Decode(t.DType, bytes, values);
                decode += sw.Elapsed.TotalSeconds;
                sw.Restart();
                plan.ApplyTo(t.Name, values);
                delta += sw.Elapsed.TotalSeconds;
                sw.Restart();
                FloatCodec.Encode(t.DType, values, bytes);
                encode += sw.Elapsed.TotalSeconds;
                sw.Restart();
                RandomAccess.Write(output, bytes, at);
                write += sw.Elapsed.TotalSeconds;
                mergedBytes += bytes.Length;
                at += bytes.Length;
            }
        }
        var flush = Stopwatch.StartNew();
        RandomAccess.FlushToDisk(output);
        write += flush.Elapsed.TotalSeconds;
    }
    File.Delete(outFile);
    double total = read + decode + delta + encode + write + copy;
    Console.WriteLine(string.Create(inv, $"merged {mergedBytes / 1e9:F2} GB, copied {copiedBytes / 1e9:F2} GB; seconds: read {read:F1}, decode {decode:F1}, ΔW {delta:F1}, encode {encode:F1}, write+fsync {write:F1}, kernel copy {copy:F1}; total {total:F1}; load `{File.ReadAllText("/proc/loadavg").Trim()}`"));
    return 0;
}
if (args.Length > 0 && args[0] is "merge" or "onnxmerge" or "copy")
{
    var sw = Stopwatch.StartNew();
    if (args[0] == "merge")
    {
        using var adapter = PeftAdapter.Load(args[2]);
        var result = CheckpointMerger.Merge(args[1], [new WeightedAdapter(adapter)], args[3]);
        Console.Error.WriteLine($"merged {result.TensorsMerged}, copied {result.TensorsCopied}, {result.BytesWritten} bytes");
    }
    else if (args[0] == "onnxmerge")
    {
        using var adapter = PeftAdapter.Load(args[2]);
        var result = OnnxModelMerger.Merge(args[1], [new WeightedAdapter(adapter)], args[3]);
        Console.Error.WriteLine($"merged {result.InitializersMerged} initializers; allocated {GC.GetTotalAllocatedBytes(true) / 1e6:F0} MB, gen2 GCs {GC.CollectionCount(2)}, heap {GC.GetGCMemoryInfo().HeapSizeBytes / 1e6:F0} MB");
    }
    else
    {
        Directory.CreateDirectory(args[2]);
        foreach (string file in Directory.GetFiles(args[1]))
        {
            string dest = Path.Combine(args[2], Path.GetFileName(file));
            File.Copy(file, dest);
            using var fs = new FileStream(dest, FileMode.Open, FileAccess.ReadWrite);
            fs.Flush(flushToDisk: true);
        }
    }
    sw.Stop();
    Console.WriteLine(ChildTrial.Report(sw.Elapsed.TotalSeconds));
    return 0;
}

const int Hidden = 4096, Intermediate = 14336, Heads = 32, KvHeads = 8, Vocab = 128256, Rank = 16;
const int KvDim = Hidden / Heads * KvHeads;
string[] Projections = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];
if (args.Length > 0 && args[0] == "generate")
{
    // Only writes the benchmark's checkpoint and adapter (for profile / merge runs by hand): generate <dir> <layers>.
    WriteCheckpoint(Path.Combine(args[1], "ckpt"), int.Parse(args[2], inv));
    WriteAdapter(Path.Combine(args[1], "adapter"), int.Parse(args[2], inv));
    return 0;
}
int layers = Arg("--layers", 32);
int pairs = Arg("--pairs", 5);
string root = Path.GetFullPath(ArgS("--dir", "/tmp/mergebench"));
string report = ArgS("--out", "docs/benchmarks-merge.md");
bool withOnnx = !args.Contains("--no-onnx");
string? givenCkpt = Array.IndexOf(args, "--ckpt") >= 0 ? Path.GetFullPath(ArgS("--ckpt", "")) : null;
string? givenAdapter = Array.IndexOf(args, "--adapter") >= 0 ? Path.GetFullPath(ArgS("--adapter", "")) : null;
string? givenOnnx = Array.IndexOf(args, "--onnx-base") >= 0 ? Path.GetFullPath(ArgS("--onnx-base", "")) : null;
if ((givenCkpt is null) != (givenAdapter is null))
{
    Console.Error.WriteLine("--ckpt and --adapter go together");
    return 2;
}

if (Directory.Exists(root))
{
    Directory.Delete(root, recursive: true);
}
Directory.CreateDirectory(root);
var log = new List<string>();
void Note(string line)
{
    Console.WriteLine(line);
    log.Add(line);
}
Note(string.Create(inv, $"start {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC: free disk {FreeGb(root):F1} GB, load `{Load()}`"));
var results = new List<(string Case, string Name, List<(double Seconds, long Kb)> Trials)>();
long checkpointBytes = 0, onnxBytes = 0;
try
{
    string ckpt = givenCkpt ?? Path.Combine(root, "ckpt");
    string adapterDir = givenAdapter ?? Path.Combine(root, "adapter");
    var watch = Stopwatch.StartNew();
    if (givenCkpt is null)
    {
        checkpointBytes = WriteCheckpoint(ckpt, layers);
        WriteAdapter(adapterDir, layers);
        Note(string.Create(inv, $"generated checkpoint {checkpointBytes / 1e9:F2} GB + adapter in {watch.Elapsed.TotalSeconds:F0} s; free disk {FreeGb(root):F1} GB"));
    }
    else
    {
        checkpointBytes = Directory.GetFiles(ckpt, "*.safetensors").Sum(f => new FileInfo(f).Length);
        Note(string.Create(inv, $"checkpoint {ckpt} ({checkpointBytes / 1e9:F2} GB), adapter {adapterDir}; free disk {FreeGb(root):F1} GB"));
    }

    results.Add(("checkpoint", "merge (CheckpointMerger, streamed)", []));
    results.Add(("checkpoint", "File.Copy of the checkpoint files", []));
    string load0 = Load();
    for (int p = 0; p < pairs; p++)
    {
        results[0].Trials.Add(ChildTrial.Run("merge", ckpt, adapterDir, Path.Combine(root, "out")));
        Directory.Delete(Path.Combine(root, "out"), recursive: true);
        results[1].Trials.Add(ChildTrial.Run("copy", ckpt, Path.Combine(root, "out")));
        Directory.Delete(Path.Combine(root, "out"), recursive: true);
        Note(string.Create(inv, $"checkpoint round {p + 1}: merge {results[0].Trials[^1].Seconds:F1} s / {results[0].Trials[^1].Kb / 1024.0:F0} MiB, copy {results[1].Trials[^1].Seconds:F1} s / {results[1].Trials[^1].Kb / 1024.0:F0} MiB"));
    }
    Note($"checkpoint case: load before `{load0}`, after `{Load()}`");

    if (withOnnx)
    {
        string onnxDir = givenOnnx is null ? Path.Combine(root, "onnx") : Path.GetDirectoryName(givenOnnx)!;
        string onnxModel = givenOnnx ?? Path.Combine(onnxDir, "model.onnx");
        watch.Restart();
        if (givenOnnx is null)
        {
            onnxBytes = WriteOnnx(ckpt, onnxModel);
            if (givenCkpt is null)
            {
                Directory.Delete(ckpt, recursive: true);
            }
            Note(string.Create(inv, $"wrote the stand-in base ONNX model {onnxBytes / 1e9:F2} GB (external data) in {watch.Elapsed.TotalSeconds:F0} s; free disk {FreeGb(root):F1} GB"));
        }
        else
        {
            onnxBytes = Directory.GetFiles(onnxDir).Sum(f => new FileInfo(f).Length);
            Note(string.Create(inv, $"ONNX base model {givenOnnx} ({onnxBytes / 1e9:F2} GB with its data)"));
        }
        results.Add(("onnx", "ONNX→ONNX merge (OnnxModelMerger, streamed)", []));
        results.Add(("onnx", "File.Copy of the ONNX files", []));
        load0 = Load();
        for (int p = 0; p < pairs; p++)
        {
            string outDir = Path.Combine(root, "out");
            Directory.CreateDirectory(outDir);
            results[2].Trials.Add(ChildTrial.Run("onnxmerge", onnxModel, adapterDir, Path.Combine(outDir, "merged.onnx")));
            Directory.Delete(outDir, recursive: true);
            results[3].Trials.Add(ChildTrial.Run("copy", onnxDir, outDir));
            Directory.Delete(outDir, recursive: true);
            Note(string.Create(inv, $"onnx round {p + 1}: merge {results[2].Trials[^1].Seconds:F1} s / {results[2].Trials[^1].Kb / 1024.0:F0} MiB, copy {results[3].Trials[^1].Seconds:F1} s / {results[3].Trials[^1].Kb / 1024.0:F0} MiB"));
        }
        Note($"onnx case: load before `{load0}`, after `{Load()}`");
    }
}
finally
{
    Directory.Delete(root, recursive: true);
}

var sb = new StringBuilder();
sb.AppendLine(string.Create(inv, $"### {layers} layers: checkpoint {checkpointBytes / 1e9:F2} GB{(onnxBytes > 0 ? $", ONNX {onnxBytes / 1e9:F2} GB" : "")}, {pairs} interleaved pairs per case"));
sb.AppendLine();
sb.AppendLine("| case | median time (s) | min–max (s) | median peak RSS (MiB) | min–max (MiB) |");
sb.AppendLine("|---|---|---|---|---|");
foreach (var (_, name, trials) in results)
{
    sb.AppendLine(string.Create(inv,
        $"| {name} | {ChildTrial.Median(trials.Select(x => x.Seconds)):F1} | {trials.Min(x => x.Seconds):F1}–{trials.Max(x => x.Seconds):F1} | {ChildTrial.Median(trials.Select(x => x.Kb / 1024.0)):F0} | {trials.Min(x => x.Kb) / 1024.0:F0}–{trials.Max(x => x.Kb) / 1024.0:F0} |"));
}
sb.AppendLine();
for (int i = 0; i + 1 < results.Count; i += 2)
{
    var ratios = results[i].Trials.Zip(results[i + 1].Trials, (m, c) => m.Seconds / c.Seconds).ToList();
    sb.AppendLine(string.Create(inv,
        $"- {results[i].Case}: merge / File.Copy, ratio of medians **{ChildTrial.Median(results[i].Trials.Select(x => x.Seconds)) / ChildTrial.Median(results[i + 1].Trials.Select(x => x.Seconds)):F2}×**; per pair median {ChildTrial.Median(ratios):F2}× (range {ratios.Min():F2}–{ratios.Max():F2}×)."));
}
sb.AppendLine();
sb.AppendLine("Log:");
sb.AppendLine();
foreach (string line in log)
{
    sb.AppendLine("    " + line);
}
string outPath = Path.GetFullPath(report);
Directory.CreateDirectory(Path.GetDirectoryName(outPath)!);
File.WriteAllText(outPath, sb.ToString());
Console.WriteLine(sb.ToString());
return 0;

static string Load() => File.ReadAllText("/proc/loadavg").Trim();

static double FreeGb(string path) => new DriveInfo(Path.GetPathRoot(path)!).AvailableFreeSpace / 1e9;

int Arg(string name, int fallback) => Array.IndexOf(args, name) is int i and >= 0 ? int.Parse(args[i + 1], inv) : fallback;

string ArgS(string name, string fallback) => Array.IndexOf(args, name) is int i and >= 0 ? args[i + 1] : fallback;

// The tensors of a Llama-3-8B-shaped model (HF names, [out, in] weights), embeddings untied.
List<TensorSpec> Tensors(int n)
{
    var all = new List<TensorSpec> { new("model.embed_tokens.weight", DType.F16, [Vocab, Hidden]) };
    for (int l = 0; l < n; l++)
    {
        string p = $"model.layers.{l}.";
        all.Add(new(p + "self_attn.q_proj.weight", DType.F16, [Hidden, Hidden]));
        all.Add(new(p + "self_attn.k_proj.weight", DType.F16, [KvDim, Hidden]));
        all.Add(new(p + "self_attn.v_proj.weight", DType.F16, [KvDim, Hidden]));
        all.Add(new(p + "self_attn.o_proj.weight", DType.F16, [Hidden, Hidden]));
        all.Add(new(p + "mlp.gate_proj.weight", DType.F16, [Intermediate, Hidden]));
        all.Add(new(p + "mlp.up_proj.weight", DType.F16, [Intermediate, Hidden]));
        all.Add(new(p + "mlp.down_proj.weight", DType.F16, [Hidden, Intermediate]));
        all.Add(new(p + "input_layernorm.weight", DType.F16, [Hidden]));
        all.Add(new(p + "post_attention_layernorm.weight", DType.F16, [Hidden]));
    }
    all.Add(new("model.norm.weight", DType.F16, [Hidden]));
    all.Add(new("lm_head.weight", DType.F16, [Vocab, Hidden]));
    return all;
}

// Pseudo-random fp16 values (|x| < 0.05) written fast: one 32 MiB block of random halves, each tensor starting at a
// different place in it, so no two tensors share bytes.
long WriteCheckpoint(string dir, int n)
{
    Directory.CreateDirectory(dir);
    File.WriteAllText(Path.Combine(dir, "config.json"), string.Create(inv,
        $"{{\"model_type\": \"llama\", \"hidden_size\": {Hidden}, \"intermediate_size\": {Intermediate}, \"num_hidden_layers\": {n}, \"num_attention_heads\": {Heads}, \"num_key_value_heads\": {KvHeads}, \"vocab_size\": {Vocab}, \"tie_word_embeddings\": false, \"torch_dtype\": \"float16\"}}\n"));
    var block = new byte[32 << 20];
    var rng = new Random(1);
    for (int i = 0; i < block.Length; i += 2)
    {
        BitConverter.TryWriteBytes(block.AsSpan(i, 2), (Half)(((rng.NextDouble() * 2) - 1) * 0.05));
    }
    var all = Tensors(n);
    long total = all.Sum(t => t.ByteLength);
    // Shards of about 5 GB, as Hugging Face's save_pretrained(max_shard_size="5GB") makes them.
    var shards = new List<List<TensorSpec>> { new() };
    long inShard = 0;
    foreach (var t in all)
    {
        if (inShard > 0 && inShard + t.ByteLength > 5_000_000_000)
        {
            shards.Add([]);
            inShard = 0;
        }
        shards[^1].Add(t);
        inShard += t.ByteLength;
    }
    var map = new SortedDictionary<string, string>(StringComparer.Ordinal);
    long offset = 0;
    for (int s = 0; s < shards.Count; s++)
    {
        string name = $"model-{s + 1:00000}-of-{shards.Count:00000}.safetensors";
        using var w = SafetensorsWriter.Create(Path.Combine(dir, name), shards[s], new Dictionary<string, string> { ["format"] = "pt" });
        foreach (var t in shards[s])
        {
            long left = t.ByteLength;
            while (left > 0)
            {
                int start = (int)(offset % (block.Length / 2)) & ~1;
                int k = (int)Math.Min(left, block.Length - start);
                w.Write(t.Name, block.AsSpan(start, k));
                left -= k;
                offset += k + (2 * 7919);
            }
            map[t.Name] = name;
        }
        w.Commit();
    }
    var idx = new StringBuilder("{\n  \"metadata\": {\"total_size\": ").Append(total).Append("},\n  \"weight_map\": {\n");
    idx.Append(string.Join(",\n", map.Select(kv => $"    \"{kv.Key}\": \"{kv.Value}\""))).Append("\n  }\n}\n");
    File.WriteAllText(Path.Combine(dir, SafetensorsCheckpoint.IndexFileName), idx.ToString());
    return total;
}

void WriteAdapter(string dir, int n)
{
    var rng = new Random(2);
    float[] Rand(int count, double scale)
    {
        var v = new float[count];
        for (int i = 0; i < count; i++)
        {
            v[i] = (float)(((rng.NextDouble() * 2) - 1) * scale);
        }
        return v;
    }
    var tensors = new List<(TensorSpec, ReadOnlyMemory<byte>)>();
    foreach (var t in Tensors(n).Where(t => Projections.Any(p => t.Name.EndsWith("." + p + ".weight", StringComparison.Ordinal))))
    {
        string path = t.Name[..^".weight".Length];
        int outF = (int)t.Shape[0], inF = (int)t.Shape[1];
        tensors.Add(PeftAdapter.EncodeTensor(PeftAdapter.KeyFor(path, AdapterModuleKind.Lora, AdapterTensorRole.LoraA), [Rank, inF], Rand(Rank * inF, 0.02)));
        tensors.Add(PeftAdapter.EncodeTensor(PeftAdapter.KeyFor(path, AdapterModuleKind.Lora, AdapterTensorRole.LoraB), [outF, Rank], Rand(outF * Rank, 0.02)));
    }
    var config = new PeftAdapterConfig { TaskType = "CAUSAL_LM", R = Rank, Alpha = 32, TargetModules = TargetModules.FromList(Projections) };
    PeftAdapter.Save(dir, config, tensors);
}

// A base ONNX model holding the checkpoint's weights under their parameter names in external data (4 KiB-aligned, in
// checkpoint order, as OnnxFile.Save lays it out), each linear weight read through Transpose → MatMul as torch.onnx
// writes nn.Linear. Only the initializers matter to a merge; the graph is a stand-in until the streaming export (issue
// #14, part 1) can write the real one at this size. Bytes are copied shard → data file by the kernel.
long WriteOnnx(string ckpt, string modelPath)
{
    Directory.CreateDirectory(Path.GetDirectoryName(modelPath)!);
    using var checkpoint = SafetensorsCheckpoint.Open(ckpt);
    var b = new OnnxGraphBuilder();
    b.AddInput("x", DType.F16, 1, Hidden);
    string dataName = OnnxFile.ExternalDataFileName(modelPath);
    long offset = 0;
    using (var data = File.OpenHandle(Path.Combine(Path.GetDirectoryName(modelPath)!, dataName), FileMode.CreateNew, FileAccess.ReadWrite))
    {
        foreach (var shard in checkpoint.Shards)
        {
            using var input = File.OpenHandle(shard.Path);
            foreach (var t in shard.Tensors)
            {
                offset = (offset + OnnxFile.ExternalDataAlignment - 1) / OnnxFile.ExternalDataAlignment * OnnxFile.ExternalDataAlignment;
                FileRange.Copy(input, shard.DataStart + t.DataOffset, data, offset, t.ByteLength);
                var tensor = new TensorProto { Name = t.Name, DataType = (int)t.DType.ToOnnx(), DataLocation = TensorProto.Types.DataLocation.External };
                tensor.Dims.Add(t.Shape);
                tensor.ExternalData.Add(new StringStringEntryProto { Key = "location", Value = dataName });
                tensor.ExternalData.Add(new StringStringEntryProto { Key = "offset", Value = offset.ToString(inv) });
                tensor.ExternalData.Add(new StringStringEntryProto { Key = "length", Value = t.ByteLength.ToString(inv) });
                b.AddInitializer(tensor);
                offset += t.ByteLength;
                if (t.Shape.Count == 2 && t.Name.Contains(".layers.", StringComparison.Ordinal))
                {
                    string wt = b.AddNode("Transpose", [t.Name], "/" + t.Name + "/Transpose", OnnxAttributes.Ints("perm", [1, 0]));
                    b.AddNode("MatMul", ["x", wt], "/" + t.Name + "/MatMul");
                }
            }
        }
        RandomAccess.FlushToDisk(data);
    }
    b.AddNode("Identity", ["x"], ["y"], "/out");
    b.AddOutput("y", DType.F16, 1, Hidden);
    File.WriteAllBytes(modelPath, Google.Protobuf.MessageExtensions.ToByteArray(b.Build()));
    return offset + new FileInfo(modelPath).Length;
}
