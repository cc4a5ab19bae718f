using System.Text.Json;
using System.Text.Json.Nodes;

namespace OnnxLora.MergeExport.Build.FakeTool;

/// <summary>
/// Fake <c>merge-export run --json</c>: follows the real tool's output contract without merging anything.
/// What it does is chosen by the first word of the file "fake-mode" in the adapter folder:
/// pass (default), gate-fail, error, garbage (no JSON, exit 3). Each call appends its arguments
/// (tab-separated, one line) to the file named by FAKE_MERGE_EXPORT_LOG when that is set.
/// The merged model it writes is "fake-onnx:" followed by the adapter's files' contents.
/// </summary>
internal static class Program
{
    private static int Main(string[] args)
    {
        string? log = Environment.GetEnvironmentVariable("FAKE_MERGE_EXPORT_LOG");
        if (!string.IsNullOrEmpty(log))
        {
            File.AppendAllText(log, string.Join('\t', args) + "\n");
        }
        if (args.Length == 0 || args[0] != "run")
        {
            Console.Error.WriteLine("fake merge-export: expected the run verb.");
            return 2;
        }
        string adapter = Option(args, "--adapter") ?? "";
        string model = Option(args, "--model") ?? "";
        string outDir = Option(args, "--out") ?? "";
        string modeFile = Path.Combine(adapter, "fake-mode");
        string mode = File.Exists(modeFile) ? File.ReadAllText(modeFile).Trim() : "pass";
        Console.Error.WriteLine($"fake: merging {adapter} into {model}");
        Console.Error.WriteLine($"fake: mode {mode}");

        if (mode == "garbage")
        {
            Console.WriteLine("this is not JSON");
            Console.Error.WriteLine("fake: Unhandled exception. System.InvalidOperationException: boom");
            return 3;
        }

        Directory.CreateDirectory(outDir);
        string reportDir = Path.Combine(outDir, "report");
        var outputs = new JsonObject
        {
            ["merged"] = Path.Combine(outDir, "merged.onnx"),
            ["unmerged"] = Path.Combine(outDir, "unmerged.onnx"),
            ["base"] = Path.Combine(outDir, "base.onnx"),
            ["reportJson"] = Path.Combine(reportDir, "report.json"),
            ["reportMarkdown"] = Path.Combine(reportDir, "report.md"),
            ["reportHtml"] = Path.Combine(reportDir, "report.html"),
        };
        if (mode == "error")
        {
            return Result("error", outputs, [], "adapter_config.json: r: found 0, expected a positive integer.", 2);
        }

        string adapterText = string.Concat(Directory.GetFiles(adapter).Where(f => !f.EndsWith("fake-mode", StringComparison.Ordinal)).Order().Select(File.ReadAllText));
        File.WriteAllText(Path.Combine(outDir, "merged.onnx"), "fake-onnx:" + adapterText);
        bool validate = !args.Contains("--no-validate");
        if (validate)
        {
            Directory.CreateDirectory(reportDir);
            File.WriteAllText(Path.Combine(reportDir, "report.md"), $"# Fake report\n\nmode: {mode}\n");
            File.WriteAllText(Path.Combine(reportDir, "report.html"), "<html><body>fake</body></html>\n");
            File.WriteAllText(Path.Combine(reportDir, "report.json"), "{}\n");
        }
        if (mode == "gate-fail")
        {
            double ratioLimit = double.Parse(Option(args, "--max-latency-ratio") ?? "1.05", System.Globalization.CultureInfo.InvariantCulture);
            JsonArray gates =
            [
                new JsonObject { ["gate"] = "max-latency-ratio", ["output"] = null, ["value"] = 1.21, ["limit"] = ratioLimit, ["message"] = "merged p50 latency is 1.21x the base model's" },
                new JsonObject { ["gate"] = "atol", ["output"] = "logits", ["value"] = 0.003, ["limit"] = 0.0001, ["message"] = "" },
            ];
            return Result("gate-failed", outputs, gates, null, 1);
        }
        return Result("passed", outputs, [], null, 0);
    }

    private static int Result(string status, JsonObject outputs, JsonArray failedGates, string? error, int exitCode)
    {
        var result = new JsonObject
        {
            ["command"] = "run",
            ["status"] = status,
            ["outputs"] = outputs,
            ["failedGates"] = failedGates,
            ["error"] = error,
        };
        Console.WriteLine(result.ToJsonString(new JsonSerializerOptions { WriteIndented = false }));
        return exitCode;
    }

    private static string? Option(string[] args, string name)
    {
        int i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
    }
}
