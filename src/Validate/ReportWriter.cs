using System.Text;
using OnnxLora.Core;
using OnnxLora.Core.IO;

namespace OnnxLora.Validate;

/// <summary>Paths of the three report files.</summary>
public sealed record ReportPaths(string Json, string Markdown, string Html);

/// <summary>
/// Writes a <see cref="ValidationReport"/> as JSON (schema <see cref="ValidationReport.SchemaId"/>, documented in
/// docs/report-schema.md), Markdown (for PR comments and CI logs) and a self-contained HTML page with charts.
/// </summary>
public static partial class ReportWriter
{
    public const string JsonFileName = "validation.json";
    public const string MarkdownFileName = "validation.md";
    public const string HtmlFileName = "validation.html";

    /// <summary>
    /// Writes validation.json, validation.md and validation.html into <paramref name="directory"/> (created if
    /// missing), each atomically. Without <paramref name="overwrite"/>, fails before writing anything when any exists.
    /// </summary>
    /// <exception cref="OnnxLoraException">A report file exists and <paramref name="overwrite"/> is false (bad input).</exception>
    public static ReportPaths WriteAll(ValidationReport report, string directory, bool overwrite = false)
    {
        ArgumentNullException.ThrowIfNull(report);
        string dir = Path.GetFullPath(directory);
        var paths = new ReportPaths(Path.Combine(dir, JsonFileName), Path.Combine(dir, MarkdownFileName), Path.Combine(dir, HtmlFileName));
        if (!overwrite)
        {
            foreach (string p in new[] { paths.Json, paths.Markdown, paths.Html })
            {
                if (File.Exists(p) || Directory.Exists(p))
                {
                    throw OnnxLoraException.OutputExists(p);
                }
            }
        }
        Write(paths.Json, ToJson(report), overwrite);
        Write(paths.Markdown, ToMarkdown(report), overwrite);
        Write(paths.Html, ToHtml(report), overwrite);
        return paths;
    }

    /// <summary>What one latency sample is, when it is more than one run (plain text, nothing to escape); empty otherwise.</summary>
    private static string SampleGrouping(LatencyReport l) => l.RunsPerSample <= 1 ? ""
        : $" Each sample is the mean of {l.RunsPerSample} runs timed together (the fastest model's sample lasts at least {Internals.Fmt.Num(Internals.LatencyBench.MinSampleMs)} ms, so one preemption by the scheduler cannot decide it); statistics are per run.";

    /// <summary>The session options every model shared, as one sentence without its period (plain text, nothing to escape).</summary>
    private static string SessionText(SessionSettings s) =>
        $"intra-op threads {Threads(s.IntraOpThreads)}, inter-op threads {Threads(s.InterOpThreads)}, graph optimisation {s.GraphOptimization.ToString().ToLowerInvariant()}, "
        + $"{s.ExecutionMode} execution{(s.CpuMemArena ? "" : ", CPU memory arena off")}";

    private static void Write(string path, string text, bool overwrite)
    {
        using var file = AtomicFile.Create(path, overwrite);
        var bytes = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false).GetBytes(text);
        file.Stream.Write(bytes);
        file.Commit();
    }
}
