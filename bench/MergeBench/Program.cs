using System.Diagnostics;
using System.Globalization;
using System.Text;
using OnnxLora.Core;
using OnnxLora.Core.Peft;
using OnnxLora.Core.Safetensors;
using OnnxLora.Merge;

// Whole-pipeline benchmark: merge a LoRA adapter into a multi-GB fp16 safetensors checkpoint with
// CheckpointMerger, side by side with a plain copy of the same files, each trial in its own child
// process so that its peak resident set (VmHWM) is its own. Trials are interleaved A B A B.
//
//   dotnet run -c Release --project bench/MergeBench -- [--layers 10] [--pairs 3] [--dir /tmp/mergebench] [--out docs/benchmarks-merge.md]
//   (child modes: merge <ckpt> <adapter> <out> | copy <ckpt> <out>)

var inv = CultureInfo.InvariantCulture;
if (args.Length > 0 && args[0] is "merge" or "copy" or "streamcopy")
{
    var sw = Stopwatch.StartNew();
    if (args[0] == "merge")
    {
        using var adapter = PeftAdapter.Load(args[2]);
        var result = CheckpointMerger.Merge(args[1], [new WeightedAdapter(adapter)], args[3]);
        Console.Error.WriteLine($"merged {result.TensorsMerged}, copied {result.TensorsCopied}, {result.BytesWritten} bytes");
    }
    else if (args[0] == "copy")
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
    else
    {
        // The same user-space path as the merger's untouched tensors: 16 MiB reads and writes, then fsync.
        Directory.CreateDirectory(args[2]);
        var buffer = new byte[16 << 20];
        foreach (string file in Directory.GetFiles(args[1]))
        {
            using var src = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan);
            using var dst = new FileStream(Path.Combine(args[2], Path.GetFileName(file)), FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16);
            int n;
            while ((n = src.Read(buffer)) > 0)
            {
                dst.Write(buffer, 0, n);
            }
            dst.Flush(flushToDisk: true);
        }
    }
    sw.Stop();
    Console.WriteLine(string.Create(inv, $"{sw.Elapsed.TotalSeconds:F3} {VmHwmKb()}"));
    return 0;
}

int layers = Arg("--layers", 10);
int pairs = Arg("--pairs", 3);
string root = ArgS("--dir", "/tmp/mergebench");
string report = ArgS("--out", "docs/benchmarks-merge.md");
const int Hidden = 4096, Intermediate = 11008, Vocab = 32000, Rank = 16;

if (Directory.Exists(root))
{
    Directory.Delete(root, recursive: true);
}
Directory.CreateDirectory(root);
try
{
    string ckpt = Path.Combine(root, "ckpt");
    var genWatch = Stopwatch.StartNew();
    long bytes = WriteCheckpoint(ckpt, layers);
    Console.WriteLine(string.Create(inv, $"checkpoint: {bytes / 1e9:F2} GB in {genWatch.Elapsed.TotalSeconds:F1} s"));
    string adapterDir = Path.Combine(root, "adapter");
    WriteAdapter(adapterDir, layers);
    if (args.Contains("--generate-only"))
    {
        return 0;
    }
    long largest = (long)Intermediate * Hidden * 2;

    var merge = new List<(double Seconds, long Kb)>();
    var copy = new List<(double Seconds, long Kb)>();
    var stream = new List<(double Seconds, long Kb)>();
    string loadBefore = File.ReadAllText("/proc/loadavg").Trim();
    for (int p = 0; p < pairs; p++)
    {
        merge.Add(Child("merge", ckpt, adapterDir, Path.Combine(root, "out-merge")));
        Directory.Delete(Path.Combine(root, "out-merge"), recursive: true);
        copy.Add(Child("copy", ckpt, Path.Combine(root, "out-copy")));
        Directory.Delete(Path.Combine(root, "out-copy"), recursive: true);
        stream.Add(Child("streamcopy", ckpt, Path.Combine(root, "out-stream")));
        Directory.Delete(Path.Combine(root, "out-stream"), recursive: true);
        Console.WriteLine(string.Create(inv, $"round {p + 1}: merge {merge[^1].Seconds:F2} s / {merge[^1].Kb / 1024.0:F0} MiB, copy {copy[^1].Seconds:F2} s / {copy[^1].Kb / 1024.0:F0} MiB, stream copy {stream[^1].Seconds:F2} s / {stream[^1].Kb / 1024.0:F0} MiB"));
    }
    string loadAfter = File.ReadAllText("/proc/loadavg").Trim();

    var sb = new StringBuilder();
    sb.AppendLine("# Merge benchmark (bench/MergeBench)");
    sb.AppendLine();
    sb.AppendLine(string.Create(inv, $"Checkpoint: LLaMA-7B-like shapes, {layers} layers (hidden {Hidden}, intermediate {Intermediate}, vocab {Vocab}), fp16, 2 shards + index, {bytes / 1e9:F2} GB; largest tensor {largest / 1e6:F0} MB (fp16 [{Intermediate}, {Hidden}]). Adapter: LoRA r={Rank} fp32 on q/k/v/o_proj of every layer ({4 * layers} modules)."));
    sb.AppendLine();
    sb.AppendLine("Method: each trial runs in its own child process (`MergeBench merge|copy|streamcopy`), timed from inside the child (adapter load + plan + merge + fsync + folder rename; copies: every file + fsync). Peak memory is the child's VmHWM from /proc/self/status. A = merge, B = plain copy of the same files (File.Copy: in-kernel copy_file_range on Linux), C = stream copy (16 MiB user-space reads/writes + fsync, the path the merger uses for untouched tensors), interleaved A B C A B C; the input checkpoint is in the page cache after the first trial.");
    sb.AppendLine(string.Create(inv, $"Machine: {Environment.ProcessorCount} cores, {GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / 1e9:F0} GB RAM, ext4 virtual disk, .NET {Environment.Version}, {DateTime.UtcNow:yyyy-MM-dd}. The machine was shared with other jobs: /proc/loadavg before `{loadBefore}`, after `{loadAfter}`, so absolute times are noisy; compare within a round."));
    sb.AppendLine();
    sb.AppendLine("| | median time (s) | min–max (s) | median peak RSS (MiB) | min–max (MiB) |");
    sb.AppendLine("|---|---|---|---|---|");
    sb.AppendLine(Row("merge (CheckpointMerger)", merge));
    sb.AppendLine(Row("plain copy (File.Copy)", copy));
    sb.AppendLine(Row("stream copy (read/write)", stream));
    sb.AppendLine();
    sb.AppendLine(string.Create(inv, $"Ratios of medians: merge / File.Copy time {Median(merge.Select(m => m.Seconds)) / Median(copy.Select(c => c.Seconds)):F2}×, merge / stream copy time {Median(merge.Select(m => m.Seconds)) / Median(stream.Select(c => c.Seconds)):F2}×; merge peak RSS / largest tensor {Median(merge.Select(m => (double)m.Kb)) * 1024 / largest:F1}× (largest merged tensor: {(long)Hidden * Hidden * 2 / 1e6:F0} MB fp16)."));
    sb.AppendLine();
    sb.AppendLine("Raw trials (s, MiB): merge " + string.Join("; ", merge.Select(m => string.Create(inv, $"{m.Seconds:F2}, {m.Kb / 1024.0:F0}")))
        + " | copy " + string.Join("; ", copy.Select(c => string.Create(inv, $"{c.Seconds:F2}, {c.Kb / 1024.0:F0}")))
        + " | stream copy " + string.Join("; ", stream.Select(c => string.Create(inv, $"{c.Seconds:F2}, {c.Kb / 1024.0:F0}"))));
    Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(report))!);
    File.WriteAllText(report, sb.ToString());
    Console.WriteLine(sb.ToString());
}
finally
{
    if (!args.Contains("--generate-only"))
    {
        Directory.Delete(root, recursive: true);
    }
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
    string dll = typeof(Program).Assembly.Location;
    if (Path.GetFileNameWithoutExtension(Environment.ProcessPath!) == "dotnet")
    {
        psi.ArgumentList.Add(dll);
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
    var parts = stdout.Trim().Split(' ');
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

int Arg(string name, int fallback) => Array.IndexOf(args, name) is int i and >= 0 ? int.Parse(args[i + 1], inv) : fallback;

string ArgS(string name, string fallback) => Array.IndexOf(args, name) is int i and >= 0 ? args[i + 1] : fallback;

static long WriteCheckpoint(string dir, int layers)
{
    Directory.CreateDirectory(dir);
    File.WriteAllText(Path.Combine(dir, "config.json"), "{\"model_type\": \"llama\", \"hidden_size\": 4096}\n");
    var block = new byte[32 << 20];
    var rng = new Random(1);
    for (int i = 0; i < block.Length; i += 2)
    {
        BitConverter.TryWriteBytes(block.AsSpan(i, 2), (Half)((rng.NextDouble() * 2 - 1) * 0.05));
    }
    var all = new List<TensorSpec> { new("model.embed_tokens.weight", DType.F16, [Vocab, Hidden]) };
    for (int l = 0; l < layers; l++)
    {
        string p = $"model.layers.{l}.";
        foreach (string m in new[] { "q_proj", "k_proj", "v_proj", "o_proj" })
        {
            all.Add(new TensorSpec(p + "self_attn." + m + ".weight", DType.F16, [Hidden, Hidden]));
        }
        all.Add(new TensorSpec(p + "mlp.gate_proj.weight", DType.F16, [Intermediate, Hidden]));
        all.Add(new TensorSpec(p + "mlp.up_proj.weight", DType.F16, [Intermediate, Hidden]));
        all.Add(new TensorSpec(p + "mlp.down_proj.weight", DType.F16, [Hidden, Intermediate]));
        all.Add(new TensorSpec(p + "input_layernorm.weight", DType.F16, [Hidden]));
        all.Add(new TensorSpec(p + "post_attention_layernorm.weight", DType.F16, [Hidden]));
    }
    all.Add(new TensorSpec("model.norm.weight", DType.F16, [Hidden]));
    all.Add(new TensorSpec("lm_head.weight", DType.F16, [Vocab, Hidden]));
    int half = all.Count / 2;
    var shards = new[] { all.Take(half).ToList(), all.Skip(half).ToList() };
    var map = new SortedDictionary<string, string>(StringComparer.Ordinal);
    long total = 0, offset = 0;
    for (int s = 0; s < 2; s++)
    {
        string name = $"model-{s + 1:00000}-of-00002.safetensors";
        using var w = SafetensorsWriter.Create(Path.Combine(dir, name), shards[s], new Dictionary<string, string> { ["format"] = "pt" });
        foreach (var t in shards[s])
        {
            long left = t.ByteLength;
            while (left > 0)
            {
                int start = (int)(offset % (block.Length / 2)) & ~1;
                int n = (int)Math.Min(left, block.Length - start);
                w.Write(t.Name, block.AsSpan(start, n));
                left -= n;
                offset += n + 2 * 7919;
            }
            map[t.Name] = name;
            total += t.ByteLength;
        }
        w.Commit();
    }
    var idx = new StringBuilder("{\n  \"metadata\": {\"total_size\": ").Append(total).Append("},\n  \"weight_map\": {\n");
    idx.Append(string.Join(",\n", map.Select(kv => $"    \"{kv.Key}\": \"{kv.Value}\""))).Append("\n  }\n}\n");
    File.WriteAllText(Path.Combine(dir, SafetensorsCheckpoint.IndexFileName), idx.ToString());
    return total;
}

static void WriteAdapter(string dir, int layers)
{
    var rng = new Random(2);
    float[] Rand(int n, double scale)
    {
        var v = new float[n];
        for (int i = 0; i < n; i++)
        {
            v[i] = (float)((rng.NextDouble() * 2 - 1) * scale);
        }
        return v;
    }
    var tensors = new List<(TensorSpec, ReadOnlyMemory<byte>)>();
    for (int l = 0; l < layers; l++)
    {
        foreach (string m in new[] { "q_proj", "k_proj", "v_proj", "o_proj" })
        {
            string path = $"model.layers.{l}.self_attn.{m}";
            tensors.Add(PeftAdapter.EncodeTensor(PeftAdapter.KeyFor(path, AdapterModuleKind.Lora, AdapterTensorRole.LoraA), [Rank, Hidden], Rand(Rank * Hidden, 0.02)));
            tensors.Add(PeftAdapter.EncodeTensor(PeftAdapter.KeyFor(path, AdapterModuleKind.Lora, AdapterTensorRole.LoraB), [Hidden, Rank], Rand(Hidden * Rank, 0.02)));
        }
    }
    var config = new PeftAdapterConfig { TaskType = "CAUSAL_LM", R = Rank, Alpha = 32, TargetModules = TargetModules.FromList(["q_proj", "k_proj", "v_proj", "o_proj"]) };
    PeftAdapter.Save(dir, config, tensors);
}
