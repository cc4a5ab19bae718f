using System.Globalization;
using OnnxLora.Validate;
using OnnxLora.ValidateBench;

// Whole-pipeline figures for Validate: builds a synthetic base/unmerged/merged model set, runs the validator with
// interleaved latency rounds and writes the three reports. Usage:
//   dotnet run -c Release --project bench/ValidateBench -- [outDir] [vocab] [hidden] [layers] [rank] [batch] [seq] [runs] [device] [threads]
// The cross-run regression gate's false alarms and detection on real runs (CompareNoise.cs):
//   dotnet run -c Release --project bench/ValidateBench -- compare-noise [outDir] [pairs] [runs] [vocab] [hidden] [layers] [seq]
if (args.Length > 0 && args[0] == "compare-noise")
{
    return CompareNoise.Run(args[1..]);
}
if (args.Length > 0 && args[0] == "validate-once")
{
    return CompareNoise.ValidateOnce(args[1..]);
}
string outDir = Path.GetFullPath(args.Length > 0 ? args[0] : "out/validate-bench");
int vocab = Arg(1, 8000), hidden = Arg(2, 256), layers = Arg(3, 4), rank = Arg(4, 16), batch = Arg(5, 2), seq = Arg(6, 64), runs = Arg(7, 40);
var device = args.Length > 8 ? Enum.Parse<ExecutionDevice>(args[8], ignoreCase: true) : ExecutionDevice.Auto;
int threads = Arg(9, 0);

Directory.CreateDirectory(outDir);
var lm = new SyntheticLm(vocab, hidden, layers, rank, seed: 42);
lm.Initialise();
string Model(SyntheticLm.Kind kind)
{
    string p = Path.Combine(outDir, $"{kind.ToString().ToLowerInvariant()}.onnx");
    lm.Write(p, kind);
    return p;
}
var request = new ValidationRequest(Model(SyntheticLm.Kind.Merged), Model(SyntheticLm.Kind.Unmerged)) { BasePath = Model(SyntheticLm.Kind.Base) };
var options = ValidationOptions.Default with
{
    Device = device,
    Batch = batch,
    Sequence = seq,
    Warmup = 5,
    Runs = runs,
    IntraOpThreads = threads,
    Padding = PaddingSide.Right,
};

var report = Validator.Run(request, options);
var paths = ReportWriter.WriteAll(report, outDir, overwrite: true);
Console.WriteLine(ReportWriter.ToMarkdown(report));
Console.WriteLine($"reports: {paths.Json} {paths.Markdown} {paths.Html}");
return report.Passed ? 0 : 1;

int Arg(int i, int fallback) => args.Length > i ? int.Parse(args[i], CultureInfo.InvariantCulture) : fallback;
