using System.Text.Json;
using System.Text.Json.Nodes;

namespace OnnxLora.MergeExport.Build.FakeTool;

/// <summary>
/// Fake <c>merge-export run --json</c>: follows the real tool's output contract without merging anything.
/// What it does is chosen by the file "fake-mode" in the adapter folder: pass (default), gate-fail,
/// regression (the max-regression gate fails; needs --baseline),
/// error (exit 2), bug (an internal error: JSON and exit 70), bug-no-json (exit 70 with only the stderr
/// one-liner, as an older tool), cancelled (exit 130), garbage (no JSON, exit 3), hang (writes its
/// process id to "fake.pid" in the adapter folder and sleeps for two minutes). Each call appends its arguments
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

        if (mode == "hang")
        {
            File.WriteAllText(Path.Combine(adapter, "fake.pid"), Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture));
            Thread.Sleep(TimeSpan.FromMinutes(2));
            return 0;
        }
        if (mode == "bug-no-json")
        {
            Console.Error.WriteLine("merge-export run: error: internal error: Index was outside the bounds of the array. (this is a bug; rerun with --verbose and report it)");
            return 70;
        }
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
            ["reportJson"] = Path.Combine(reportDir, "validation.json"),
            ["reportMarkdown"] = Path.Combine(reportDir, "validation.md"),
            ["reportHtml"] = Path.Combine(reportDir, "validation.html"),
        };
        switch (mode)
        {
            case "error":
                return Result("error", outputs, [], "adapter_config.json: r: found 0, expected a positive integer.", 2);
            case "bug":
                Console.Error.WriteLine("merge-export run: error: internal error: Index was outside the bounds of the array. (this is a bug; rerun with --verbose and report it)");
                return Result("error", [], [], "internal error: Index was outside the bounds of the array. (this is a bug; rerun with --verbose and report it)", 70);
            case "cancelled":
                Console.Error.WriteLine("merge-export run: cancelled; no partial outputs were left.");
                return Result("error", [], [], "cancelled", 130);
        }

        string adapterText = string.Concat(Directory.GetFiles(adapter).Where(f => !f.EndsWith("fake-mode", StringComparison.Ordinal)).Order().Select(File.ReadAllText));
        File.WriteAllText(Path.Combine(outDir, "merged.onnx"), "fake-onnx:" + adapterText);
        bool validate = !args.Contains("--no-validate");
        if (validate)
        {
            Directory.CreateDirectory(reportDir);
            File.WriteAllText(Path.Combine(reportDir, "validation.md"), $"# Fake report\n\nmode: {mode}\n");
            File.WriteAllText(Path.Combine(reportDir, "validation.html"), "<html><body>fake</body></html>\n");
            File.WriteAllText(Path.Combine(reportDir, "validation.json"), "{}\n");
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
        if (mode == "regression")
        {
            string baseline = Option(args, "--baseline") ?? "(no --baseline)";
            JsonArray gates =
            [
                new JsonObject
                {
                    ["gate"] = "max-regression", ["output"] = null, ["value"] = 1.08, ["limit"] = 1.05,
                    ["message"] = $"merged latency vs baseline {baseline}: ratio 1.12 (95% CI 1.08–1.16)",
                },
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
            ["exitCode"] = exitCode,
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
