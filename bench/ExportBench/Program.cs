using System.Diagnostics;
using System.Globalization;
using Microsoft.ML.OnnxRuntime;
using OnnxLora.Core.Onnx;
using OnnxLora.Export;
using OnnxLora.Models;
using OnnxLora.Models.Llama;
using OnnxLora.Models.Onnx;
using static TorchSharp.torch;

// Export throughput of a model whose weights exceed 2 GiB (so external data is required), measured
// side by side with a plain write of the same number of bytes (A B A B ...), then one ORT run of the
// exported file against the eager forward.
//   dotnet run -c Release --project bench/ExportBench -- [--repeats 3] [--dir /tmp/x] [--layers 8]
var culture = CultureInfo.InvariantCulture;
int repeats = IntArg("--repeats", 3);
int layers = IntArg("--layers", 8);
string dir = StringArg("--dir", Path.Combine(Path.GetTempPath(), "onnxlora-exportbench"));
Directory.CreateDirectory(dir);

var config = TinyConfigs.Llama() with
{
    VocabSize = 32000,
    HiddenSize = 2048,
    IntermediateSize = 5632,
    NumHiddenLayers = layers,
    NumAttentionHeads = 32,
    NumKeyValueHeads = 32,
    MaxPositionEmbeddings = 2048,
};
Console.WriteLine($"model: llama hidden {config.HiddenSize}, intermediate {config.IntermediateSize}, layers {layers}, vocab {config.VocabSize}");
var create = Stopwatch.StartNew();
using var model = LlamaForCausalLM.CreateRandom(config, seed: 1, std: 0.02);
model.eval();
long parameterBytes = model.parameters().Sum(p => p.numel() * 4);
Console.WriteLine($"parameters: {parameterBytes / 1e9:F3} GB fp32 (created in {create.Elapsed.TotalSeconds:F1} s)");

string modelPath = Path.Combine(dir, "model.onnx");
string plainPath = Path.Combine(dir, "plain.bin");
var exportSeconds = new List<double>();
var buildSeconds = new List<double>();
var plainSeconds = new List<double>();
long exportedBytes = 0;
var options = new ExportOptions { Mode = OnnxExportMode.Base, ExternalData = OnnxExternalData.Auto, Overwrite = true };
byte[] buffer = new byte[64 << 20];
new Random(7).NextBytes(buffer);
for (int r = 0; r < repeats; r++)
{
    DeleteOutputs();
    GC.Collect();
    // OnnxExporter.Export is BuildModel followed by OnnxFile.Save; timed as its two phases.
    var sw = Stopwatch.StartNew();
    var proto = OnnxExporter.BuildModel(model, options);
    buildSeconds.Add(sw.Elapsed.TotalSeconds);
    string? dataPath = OnnxFile.Save(proto, modelPath, new OnnxSaveOptions { ExternalData = options.ExternalData, Overwrite = true });
    exportSeconds.Add(sw.Elapsed.TotalSeconds);
    exportedBytes = new FileInfo(modelPath).Length + (dataPath is null ? 0 : new FileInfo(dataPath).Length);
    if (dataPath is null)
    {
        throw new InvalidOperationException("expected external data above 2 GiB");
    }
    Console.WriteLine($"  export {r}: {exportSeconds[^1]:F2} s (build {buildSeconds[^1]:F2} s), {exportedBytes / 1e6:F0} MB → {exportedBytes / 1e6 / exportSeconds[^1]:F0} MB/s");

    File.Delete(plainPath);
    GC.Collect();
    sw.Restart();
    using (var stream = new FileStream(plainPath, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
    {
        for (long left = exportedBytes; left > 0; left -= buffer.Length)
        {
            stream.Write(buffer, 0, (int)Math.Min(left, buffer.Length));
        }
        stream.Flush(flushToDisk: true);
    }
    plainSeconds.Add(sw.Elapsed.TotalSeconds);
    Console.WriteLine($"  plain  {r}: {plainSeconds[^1]:F2} s → {exportedBytes / 1e6 / plainSeconds[^1]:F0} MB/s");
}
File.Delete(plainPath);

// One ORT run of the last export (CPU), compared with the eager forward.
const int batch = 1, seq = 16;
long[] ids = Enumerable.Range(0, batch * seq).Select(i => (long)(i * 37 % config.VocabSize)).ToArray();
long[] mask = Enumerable.Repeat(1L, batch * seq).ToArray();
var load = Stopwatch.StartNew();
using var sessionOptions = new SessionOptions { LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR };
using var session = new InferenceSession(modelPath, sessionOptions);
double loadSeconds = load.Elapsed.TotalSeconds;
using var idsValue = OrtValue.CreateTensorValueFromMemory(ids, [batch, seq]);
using var maskValue = OrtValue.CreateTensorValueFromMemory(mask, [batch, seq]);
using var runOptions = new RunOptions();
var run = Stopwatch.StartNew();
using var outputs = session.Run(runOptions, new Dictionary<string, OrtValue> { ["input_ids"] = idsValue, ["attention_mask"] = maskValue }, ["logits"]);
double runSeconds = run.Elapsed.TotalSeconds;
float[] ortLogits = outputs[0].GetTensorDataAsSpan<float>().ToArray();
float[] eager;
using (var scope = NewDisposeScope())
using (no_grad())
{
    eager = model.call(tensor(ids, [batch, seq]), tensor(mask, [batch, seq])).contiguous().data<float>().ToArray();
}
double maxDiff = ortLogits.Zip(eager, (a, b) => Math.Abs((double)a - b)).Max();

Console.WriteLine();
Console.WriteLine($"| what | median | min | max |");
Console.WriteLine($"|---|---|---|---|");
Console.WriteLine(Row("export (BuildModel + atomic write, external data)", exportSeconds));
Console.WriteLine(Row("  of which BuildModel (weights → fp32 initializers, Linear weights transposed)", buildSeconds));
Console.WriteLine(Row("plain write of the same bytes (64 MiB chunks, fsync)", plainSeconds));
Console.WriteLine();
Console.WriteLine($"bytes written per export: {exportedBytes / 1e6:F0} MB; export/plain time ratio (medians): {Median(exportSeconds) / Median(plainSeconds):F2}");
Console.WriteLine($"ORT CPU: session create {loadSeconds:F1} s, run ({batch}, {seq}) {runSeconds * 1000:F0} ms, max |ORT − eager| = {maxDiff:G3}");
DeleteOutputs();
return 0;

string Row(string what, List<double> seconds) =>
    $"| {what} | {Median(seconds):F2} s ({exportedBytes / 1e6 / Median(seconds):F0} MB/s) | {seconds.Min():F2} s | {seconds.Max():F2} s |";

static double Median(List<double> values)
{
    var sorted = values.Order().ToList();
    return sorted.Count % 2 == 1 ? sorted[sorted.Count / 2] : (sorted[sorted.Count / 2 - 1] + sorted[sorted.Count / 2]) / 2;
}

void DeleteOutputs()
{
    File.Delete(modelPath);
    File.Delete(modelPath + ".data");
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
