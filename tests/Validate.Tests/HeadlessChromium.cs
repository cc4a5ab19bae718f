using System.Diagnostics;
using SkiaSharp;

namespace OnnxLora.Validate.Tests;

/// <summary>
/// Renders an HTML report in headless Chromium (/usr/bin/chromium; scripts/setup.sh installs it) and measures the
/// screenshot: how much of the page is ink, how many colours (charts add many) and how many strongly red pixels.
/// </summary>
internal static class HeadlessChromium
{
    private const string Chromium = "/usr/bin/chromium";

    /// <summary>What a screenshot shows, sampled every second pixel.</summary>
    public sealed record Page(int Width, long Sampled, long Ink, long Red, int Colours);

    /// <summary>Marks the test inconclusive when Chromium is not installed.</summary>
    public static void RequireInstalled()
    {
        if (!File.Exists(Chromium))
        {
            Assert.Inconclusive("chromium is not installed (apt-get install -y chromium, or scripts/setup.sh).");
        }
    }

    /// <summary>
    /// Screenshots <paramref name="html"/> at 1200 × <paramref name="height"/> into <paramref name="workDir"/>, keeps a
    /// copy named <paramref name="keepAs"/> with the test results, and measures it.
    /// </summary>
    public static Page Render(TestContext context, string html, string workDir, string keepAs, int height)
    {
        RequireInstalled();
        string shot = Path.Combine(workDir, "shot.png");
        var psi = new ProcessStartInfo(Chromium)
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
        };
        foreach (string a in new[]
        {
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
            $"--user-data-dir={Path.Combine(workDir, "chromium-profile")}", $"--window-size=1200,{height}",
            $"--screenshot={shot}", new Uri(html).AbsoluteUri,
        })
        {
            psi.ArgumentList.Add(a);
        }
        using (var p = Process.Start(psi)!)
        {
            var stderr = p.StandardError.ReadToEndAsync();
            _ = p.StandardOutput.ReadToEndAsync();
            if (!p.WaitForExit(TimeSpan.FromSeconds(120)))
            {
                p.Kill(entireProcessTree: true);
                Assert.Fail("chromium did not finish within 120 s");
            }
            Assert.IsTrue(File.Exists(shot), "no screenshot; chromium said: " + stderr.Result);
        }

        string kept = Path.Combine(context.TestRunResultsDirectory ?? workDir, keepAs);
        Directory.CreateDirectory(Path.GetDirectoryName(kept)!);
        File.Copy(shot, kept, overwrite: true);
        context.AddResultFile(kept);

        using var bitmap = SKBitmap.Decode(shot);
        long ink = 0, red = 0;
        var colours = new HashSet<uint>();
        for (int y = 0; y < bitmap.Height; y += 2)
        {
            for (int x = 0; x < bitmap.Width; x += 2)
            {
                var c = bitmap.GetPixel(x, y);
                colours.Add((uint)c);
                if (c.Red + c.Green + c.Blue < 600)
                {
                    ink++;
                }
                if (c.Red > 180 && c.Green < 80 && c.Blue < 80)
                {
                    red++;
                }
            }
        }
        return new Page(bitmap.Width, (long)(bitmap.Width / 2) * (bitmap.Height / 2), ink, red, colours.Count);
    }
}
