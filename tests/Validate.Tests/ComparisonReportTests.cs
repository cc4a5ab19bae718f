using System.Text.RegularExpressions;
using SkiaSharp;

namespace OnnxLora.Validate.Tests;

[TestClass]
public sealed partial class ComparisonReportTests
{
    public TestContext TestContext { get; set; } = null!;

    /// <summary>Three runs: the baseline, one of the same model, one with a planted 10% slowdown of the merged model.</summary>
    private static RunComparison ThreeRuns(bool allowDifferentMachines = false)
    {
        var a = SyntheticRuns.Report(SyntheticRuns.Latencies(60, 4.0, 1.0, 11), SyntheticRuns.Latencies(60, 3.9, 1.0, 12));
        var b = SyntheticRuns.Report(SyntheticRuns.Latencies(60, 4.0, 1.0, 13), SyntheticRuns.Latencies(60, 3.9, 1.0, 14));
        var c = SyntheticRuns.Report(SyntheticRuns.Latencies(60, 4.0, 1.10, 15), SyntheticRuns.Latencies(60, 3.9, 1.0, 16));
        if (allowDifferentMachines)
        {
            c = RunComparerTests.Change(c, "machine.cpuModel");
        }
        return RunComparer.Compare(
            [SyntheticRuns.Compared("main", a), SyntheticRuns.Compared("rerun", b), SyntheticRuns.Compared("rank-64", c)],
            RunComparisonOptions.Default with { MaxRegression = 0.05, AllowDifferentMachines = allowDifferentMachines });
    }

    [TestMethod]
    public void Markdown_HasTheLatencyTableWithIntervalsVerdictsAndErrorColumns()
    {
        var c = ThreeRuns();

        string md = ReportWriter.ToComparisonMarkdown(c);

        StringAssert.StartsWith(md, "## OnnxLora latency comparison: ❌ REGRESSION: 1 merged model is slower than the baseline beyond 5%");
        StringAssert.Contains(md, "| Model | Report | Runs | Median ms (95% CI) | p90 ms | Tokens/s | Ratio to baseline (95% CI) | Relative to base, drift-corrected (95% CI) | Change | Verdict | Max abs vs unmerged | Top-1 vs unmerged | Max abs vs eager |");
        var merged = c.Latency.Single(l => l.Label == "rank-64" && l.Role == ModelRole.Merged);
        var r = merged.Ratio!;
        var d = merged.RelativeToBase!;
        StringAssert.Contains(md, $"| merged | rank-64 | 60 | {Ms(merged.Median.MedianMs)} ({Ms(merged.Median.LowMs)}–{Ms(merged.Median.HighMs)}) |");
        StringAssert.Contains(md, $"| {r.Ratio:0.000} ({r.Low:0.000}–{r.High:0.000}) | {d.Ratio:0.000} ({d.Low:0.000}–{d.High:0.000}) | +{(d.Ratio - 1) * 100:0.0}% | ❌ regression | 1.83e+00 | 50.00% | – |");
        StringAssert.Contains(md, "| merged | main (baseline) | 60 |");
        StringAssert.Contains(md, "| base | rank-64 | 60 |");
        StringAssert.Contains(md, "- ❌ rank-64: merged median");
        StringAssert.Contains(md, "| rank-64 | merged vs unmerged | logits | 1.83e+00 |");
        StringAssert.Contains(md, "| 2 | rank-64 | 2026-11-29 09:21:42 | ❌ fail | `aaaaaaaaaaaa` | CPUExecutionProvider | 1.31.0 | 1.2.3+abc | 60 |");
        Assert.DoesNotContain("Different machines", md);
        Assert.DoesNotContain("### Differences", md);
    }

    [TestMethod]
    public void Markdown_DifferentMachinesAllowed_SaysSoAndListsTheField()
    {
        string md = ReportWriter.ToComparisonMarkdown(ThreeRuns(allowDifferentMachines: true));

        StringAssert.Contains(md, "> ⚠️ These reports come from different machines");
        StringAssert.Contains(md, "| rank-64 | `machine.cpuModel` | machine | AMD EPYC 7763 64-Core Processor | Other CPU |");
    }

    [TestMethod]
    public void Html_IsSelfContainedWithTwoScottPlotCharts()
    {
        string html = ReportWriter.ToComparisonHtml(ThreeRuns(allowDifferentMachines: true));

        StringAssert.StartsWith(html, "<!DOCTYPE html>");
        foreach (string banned in new[] { "<script", "<link", "http://", "https://", "url(" })
        {
            Assert.DoesNotContain(banned, html);
        }
        var sources = ImageSources().Matches(html).Select(m => m.Groups[1].Value).ToList();
        Assert.HasCount(2, sources);
        foreach (string src in sources)
        {
            using var bitmap = SKBitmap.Decode(Convert.FromBase64String(src["data:image/png;base64,".Length..]));
            Assert.AreEqual((1100, 380), (bitmap.Width, bitmap.Height));
        }
        StringAssert.Contains(html, "class=\"badge fail\">REGRESSION<");
        StringAssert.Contains(html, "<span class=\"bad\">regression</span>");
        StringAssert.Contains(html, "<b>Different machines or settings.</b>");
        StringAssert.Contains(html, "<code>machine.cpuModel</code>");
    }

    [TestMethod]
    public void WriteComparison_WritesTwoFiles_AndNeverClobbersWithoutOverwrite()
    {
        using var f = new TestFiles();
        var c = ThreeRuns();
        string dir = Path.Combine(f.Dir, "cmp");

        var paths = ReportWriter.WriteComparison(c, dir);

        Assert.AreEqual(ReportWriter.ToComparisonMarkdown(c), File.ReadAllText(paths.Markdown));
        Assert.AreEqual(Path.Combine(dir, "compare.html"), paths.Html);
        StringAssert.Contains(BadInput.Throws(() => ReportWriter.WriteComparison(c, dir)).Message, "compare.md");
        ReportWriter.WriteComparison(c, dir, overwrite: true);
        Assert.HasCount(2, Directory.GetFiles(dir));
    }

    /// <summary>Renders the comparison page in headless Chromium, as the validation report is: content, charts, the red regression badge.</summary>
    [TestMethod]
    public void Html_RendersInHeadlessChromium_NonBlank()
    {
        HeadlessChromium.RequireInstalled();
        using var f = new TestFiles();
        var paths = ReportWriter.WriteComparison(ThreeRuns(), Path.Combine(f.Dir, "cmp"));

        var page = HeadlessChromium.Render(TestContext, paths.Html, f.Dir, "compare-report-screenshot.png", height: 2200);

        Assert.AreEqual(1200, page.Width);
        Assert.IsGreaterThan(page.Sampled / 100, page.Ink, "the page should show text, tables and charts");
        Assert.IsGreaterThan(200, page.Colours, "charts add many colours");
        Assert.IsGreaterThan(50, page.Red, "the REGRESSION badge and the regression's interval are red");
    }

    private static string Ms(double v) => v.ToString(v < 10 ? "0.000" : "0.0", System.Globalization.CultureInfo.InvariantCulture);

    [GeneratedRegex("<img [^>]*src=\"([^\"]+)\"")]
    private static partial Regex ImageSources();
}
