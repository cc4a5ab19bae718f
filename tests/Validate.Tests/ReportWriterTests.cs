using System.Text.Json;
using System.Text.RegularExpressions;
using SkiaSharp;

namespace OnnxLora.Validate.Tests;

[TestClass]
public sealed partial class ReportWriterTests
{
    private static readonly Lazy<ValidationReport> Full = new(MakeFullReport);

    public TestContext TestContext { get; set; } = null!;

    /// <summary>
    /// A report with every optional part present: three models, an eager reference, latency, a failing tolerance
    /// gate (merged weights doubled), a symbolic-dim override and an input file list.
    /// </summary>
    private static ValidationReport MakeFullReport()
    {
        using var f = new TestFiles();
        var lm = f.Lm;
        float[] doubled = lm.MergedW().Select(x => x * 2).ToArray();
        var request = new ValidationRequest(f.Merged(g => g with { Weight = doubled }), f.Unmerged())
        {
            BasePath = f.Base(),
            EagerReference = inputs => new Dictionary<string, float[]>
            {
                ["logits"] = lm.Logits(lm.MergedW(), inputs["input_ids"].GetData<long>().ToArray(), inputs["attention_mask"].GetData<long>().ToArray())
                    .Select(x => (float)x).ToArray(),
            },
        };
        return Validator.Run(request, TestFiles.Cpu with
        {
            Runs = 6,
            Warmup = 1,
            Padding = PaddingSide.Right,
            Dims = new Dictionary<string, long> { ["unused_dim"] = 3 },
        });
    }

    [TestMethod]
    public void Json_FieldsAreExactlyTheDocumentedOnes()
    {
        string json = ReportWriter.ToJson(Full.Value);
        using var doc = JsonDocument.Parse(json);
        var written = new SortedSet<string>(StringComparer.Ordinal);
        Collect(doc.RootElement, "", written);
        // That run had no GPU and no baseline; the hand-made report has both.
        using var known = JsonDocument.Parse(ReportWriter.ToJson(KnownReport()));
        Collect(known.RootElement, "", written);

        var documented = DocumentedFields();

        var undocumented = written.Except(documented).ToList();
        var missing = documented.Except(written).ToList();
        Assert.AreEqual(0, undocumented.Count, "written but not documented: " + string.Join(", ", undocumented));
        Assert.AreEqual(0, missing.Count, "documented but not written: " + string.Join(", ", missing));
        Assert.IsGreaterThan(100, documented.Count);
    }

    [TestMethod]
    public void Json_CarriesSchemaStatusFailuresAndProvider()
    {
        var report = Full.Value;
        using var doc = JsonDocument.Parse(ReportWriter.ToJson(report));
        var root = doc.RootElement;

        Assert.AreEqual("onnxlora.validation/3", root.GetProperty("schema").GetString());
        Assert.AreEqual("gateFailed", root.GetProperty("status").GetString());
        Assert.AreEqual("CPUExecutionProvider", root.GetProperty("provider").GetProperty("used").GetString());
        var failure = root.GetProperty("failures").EnumerateArray().First(x => x.GetProperty("gate").GetString() == "tolerance");
        Assert.AreEqual("logits", failure.GetProperty("output").GetString());
        Assert.AreEqual(report.Comparisons[0].Outputs[0].MaxAbsError, failure.GetProperty("value").GetDouble());
        var comparisons = root.GetProperty("comparisons").EnumerateArray().Select(c => c.GetProperty("name").GetString()).ToArray();
        CollectionAssert.AreEqual(new[] { "merged vs unmerged", "merged vs base", "merged vs eager" }, comparisons);
        Assert.AreEqual(6, root.GetProperty("latency").GetProperty("models")[0].GetProperty("samplesMs").GetArrayLength());
        Assert.AreEqual(JsonValueKind.Null, root.GetProperty("provider").GetProperty("fallbackReason").ValueKind);
    }

    [TestMethod]
    public void Json_NonFiniteNumbersAreWrittenAsNull()
    {
        var report = Full.Value with
        {
            PeakMemoryBytes = null,
            Comparisons = [Full.Value.Comparisons[0] with { Outputs = [Full.Value.Comparisons[0].Outputs[0] with { MaxRelError = double.PositiveInfinity, RmsError = double.NaN }] }],
        };
        using var doc = JsonDocument.Parse(ReportWriter.ToJson(report));
        var o = doc.RootElement.GetProperty("comparisons")[0].GetProperty("outputs")[0];

        Assert.AreEqual(JsonValueKind.Null, o.GetProperty("maxRelError").ValueKind);
        Assert.AreEqual(JsonValueKind.Null, o.GetProperty("rmsError").ValueKind);
        Assert.AreEqual(JsonValueKind.Number, o.GetProperty("maxAbsError").ValueKind);
        Assert.AreEqual(JsonValueKind.Null, doc.RootElement.GetProperty("peakMemoryBytes").ValueKind);
    }

    [TestMethod]
    public void Markdown_ContainsTheSummaryTables()
    {
        string md = ReportWriter.ToMarkdown(Full.Value);

        StringAssert.StartsWith(md, "## OnnxLora validation: ❌ FAIL");
        StringAssert.Contains(md, "**Provider:** `CPUExecutionProvider`");
        StringAssert.Contains(md, "| Gate | Limit | Result | Detail |");
        StringAssert.Contains(md, "| tolerance | ");
        StringAssert.Contains(md, "❌ fail");
        StringAssert.Contains(md, "| Role | File | Size (with external data) | Session create | RSS growth at load |");
        StringAssert.Contains(md, "| Input | Type | Shape | Source |");
        StringAssert.Contains(md, "| Comparison | Output | Shape | Max abs | Max rel | RMS | Cosine | Beyond tol | NaN/Inf | Top-1 | Gated |");
        StringAssert.Contains(md, "| merged vs unmerged | `logits` | [2, 6, 48] |");
        StringAssert.Contains(md, "| merged vs eager | `logits` |");
        StringAssert.Contains(md, "| Model | Mean ms | Std | Min | p50 | p90 | p95 | p99 | Max | Seq/s | Tokens/s |");
        StringAssert.Contains(md, "| Ratio (per round) | Median | p10 | p90 | IQR (q25–q75) | Mean | Pairs |");
        StringAssert.Contains(md, "| merged/base |");
        StringAssert.Contains(md, "- `tolerance`: merged vs unmerged: output logits:");
        // Pipes inside cells are escaped so tables stay tables.
        StringAssert.Contains(md, "\\|merged − ref\\|");
        foreach (string line in md.Split('\n').Where(l => l.StartsWith('|')))
        {
            int cells = UnescapedPipes().Matches(line).Count;
            Assert.IsGreaterThanOrEqualTo(3, cells, line);
        }
    }

    [TestMethod]
    public void Html_IsSelfContainedWithThreeScottPlotCharts()
    {
        string html = ReportWriter.ToHtml(Full.Value);

        StringAssert.StartsWith(html, "<!DOCTYPE html>");
        Assert.DoesNotContain("<script", html);
        Assert.DoesNotContain("<link", html);
        Assert.DoesNotContain("http://", html);
        Assert.DoesNotContain("https://", html);
        Assert.DoesNotContain("url(", html);
        StringAssert.Contains(html, "<style>");
        var sources = ImageSources().Matches(html).Select(m => m.Groups[1].Value).ToList();
        Assert.HasCount(3, sources);
        foreach (string src in sources)
        {
            StringAssert.StartsWith(src, "data:image/png;base64,");
            byte[] png = Convert.FromBase64String(src["data:image/png;base64,".Length..]);
            using var bitmap = SKBitmap.Decode(png);
            Assert.AreEqual(1100, bitmap.Width);
            Assert.AreEqual(380, bitmap.Height);
        }
        StringAssert.Contains(html, "class=\"badge fail\">FAIL<");
        StringAssert.Contains(html, "merged vs unmerged");
    }

    [TestMethod]
    public void Html_WithoutLatency_HasOnlyTheErrorChart()
    {
        var report = Full.Value with { Latency = null };

        string html = ReportWriter.ToHtml(report);

        Assert.HasCount(1, ImageSources().Matches(html));
        StringAssert.Contains(html, "Not measured");
    }

    [TestMethod]
    public void WriteAll_WritesThreeFiles_AndNeverClobbersWithoutOverwrite()
    {
        using var f = new TestFiles();
        string dir = Path.Combine(f.Dir, "report");

        var paths = ReportWriter.WriteAll(Full.Value, dir);

        Assert.AreEqual(Path.Combine(dir, "validation.json"), paths.Json);
        Assert.AreEqual(ReportWriter.ToMarkdown(Full.Value), File.ReadAllText(paths.Markdown));
        Assert.AreEqual(ReportWriter.ToJson(Full.Value), File.ReadAllText(paths.Json));
        Assert.IsTrue(File.Exists(paths.Html));
        File.WriteAllText(paths.Markdown, "edited");

        var e = BadInput.Throws(() => ReportWriter.WriteAll(Full.Value, dir));
        StringAssert.Contains(e.Message, "validation.json");
        Assert.AreEqual("edited", File.ReadAllText(paths.Markdown), "nothing is written when any file exists");

        ReportWriter.WriteAll(Full.Value, dir, overwrite: true);
        Assert.AreNotEqual("edited", File.ReadAllText(paths.Markdown));
        Assert.IsEmpty(Directory.GetFiles(dir, "*.partial"));
        Assert.HasCount(3, Directory.GetFiles(dir));
    }

    /// <summary>Renders the HTML in headless Chromium and checks the screenshot shows content. Needs /usr/bin/chromium (apt-get install chromium).</summary>
    [TestMethod]
    public void Html_RendersInHeadlessChromium_NonBlank()
    {
        HeadlessChromium.RequireInstalled();
        using var f = new TestFiles();
        var paths = ReportWriter.WriteAll(Full.Value, Path.Combine(f.Dir, "report"));

        var page = HeadlessChromium.Render(TestContext, paths.Html, f.Dir, "validation-report-screenshot.png", height: 2600);

        Assert.AreEqual(1200, page.Width);
        Assert.IsGreaterThan(page.Sampled / 100, page.Ink, "the page should show text, tables and charts");
        Assert.IsGreaterThan(200, page.Colours, "charts add many colours");
        Assert.IsGreaterThan(50, page.Red, "the FAIL badge is red");
    }

    private static HashSet<string> DocumentedFields()
    {
        string doc = File.ReadAllText(Path.Combine(RepoRoot(), "docs", "report-schema.md"));
        string body = doc[doc.IndexOf("## Top level", StringComparison.Ordinal)..];
        return [.. DocumentedField().Matches(body).Select(m => m.Groups[1].Value)];
    }

    private static void Collect(JsonElement e, string path, SortedSet<string> into)
    {
        switch (e.ValueKind)
        {
            case JsonValueKind.Object:
                foreach (var p in e.EnumerateObject())
                {
                    string child = path.Length == 0 ? p.Name : $"{path}.{p.Name}";
                    into.Add(child);
                    Collect(p.Value, child, into);
                }
                break;
            case JsonValueKind.Array:
                foreach (var item in e.EnumerateArray().Where(i => i.ValueKind == JsonValueKind.Object))
                {
                    Collect(item, path + "[]", into);
                }
                break;
        }
    }

    internal static string RepoRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "OnnxLora.sln")))
        {
            dir = dir.Parent;
        }
        return dir?.FullName ?? throw new InvalidOperationException("OnnxLora.sln not found above " + AppContext.BaseDirectory);
    }

    [GeneratedRegex(@"^\| `([^`]+)` \|", RegexOptions.Multiline)]
    private static partial Regex DocumentedField();

    [GeneratedRegex("<img [^>]*src=\"([^\"]+)\"")]
    private static partial Regex ImageSources();

    [GeneratedRegex(@"(?<!\\)\|")]
    private static partial Regex UnescapedPipes();
}
