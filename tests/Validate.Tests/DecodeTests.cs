namespace OnnxLora.Validate.Tests;

/// <summary>
/// Decode latency and the decode comparison (<see cref="ValidationOptions.DecodeTokens"/>) on the tiny with-past graph
/// (<see cref="TinyLm.Graph.WithPast"/>), whose greedy tokens are recomputed independently in fp64.
/// </summary>
[TestClass]
public sealed class DecodeTests
{
    private const int NewTokens = 8;
    private const int Rounds = 3;

    private static ValidationOptions Decode => TestFiles.Cpu with { DecodeTokens = NewTokens, PromptTokens = 5, DecodeRuns = Rounds, Warmup = 1 };

    private static TinyLm.Graph Past(TinyLm.Graph g) => g with { WithPast = true };

    [TestMethod]
    public void Decode_MergedUnmergedAndBase_GenerateTheFp64ReferenceTokens_WithSaneLatency()
    {
        using var f = new TestFiles();
        var request = new ValidationRequest(f.Merged(Past), f.Unmerged(Past)) { BasePath = f.Base(Past) };

        var report = Validator.Run(request, Decode);

        Assert.AreEqual(ValidationStatus.Pass, report.Status, string.Join("\n", report.Failures.Select(x => x.Message)));
        var d = report.Decode!;
        Assert.AreEqual(5, d.PromptTokens);
        Assert.AreEqual(NewTokens, d.NewTokens);
        Assert.AreEqual(2L, d.BatchSize);
        Assert.AreEqual(2 * 5, d.PromptIds.Count);
        CollectionAssert.AreEqual(new[] { ModelRole.Merged, ModelRole.Unmerged, ModelRole.Base }, d.Models.Select(m => m.Role).ToArray());
        float[] merged = f.Lm.MergedW();
        for (int b = 0; b < 2; b++)
        {
            long[] prompt = [.. d.PromptIds.Skip(b * 5).Take(5)];
            CollectionAssert.AreEqual(f.Lm.GreedyPast(merged, prompt, NewTokens), d.Models[0].TokenIds.Skip(b * NewTokens).Take(NewTokens).ToArray(), $"merged, row {b}");
            CollectionAssert.AreEqual(f.Lm.GreedyPast(f.Lm.W, prompt, NewTokens), d.Models[2].TokenIds.Skip(b * NewTokens).Take(NewTokens).ToArray(), $"base, row {b}");
        }
        foreach (var m in d.Models)
        {
            Assert.AreEqual(Rounds, m.FirstToken.Count);
            Assert.AreEqual(Rounds, m.FirstTokenSamplesMs.Count);
            Assert.AreEqual(Rounds * (NewTokens - 1), m.PerToken.Count);
            Assert.AreEqual(Rounds * (NewTokens - 1), m.StepSamplesMs.Count);
            Assert.AreEqual(2 * NewTokens, m.TokenIds.Count);
            Assert.IsTrue(m.PerToken.MinMs > 0 && m.PerToken.MinMs <= m.PerToken.P50Ms && m.PerToken.P50Ms <= m.PerToken.P90Ms
                && m.PerToken.P90Ms <= m.PerToken.P99Ms && m.PerToken.P99Ms <= m.PerToken.MaxMs, $"{m.Role}: {m.PerToken}");
            Assert.AreEqual(2.0 * m.StepSamplesMs.Count / (m.StepSamplesMs.Sum() / 1000), m.TokensPerSecond, 1e-9 * m.TokensPerSecond);
        }
        Assert.AreEqual(3, d.Ratios.Count);
        Assert.IsTrue(d.Ratios.All(r => r.Pairs == Rounds && r.Median > 0));

        var unmerged = d.Comparisons.Single(c => c.Reference == ModelRole.Unmerged);
        Assert.IsTrue(unmerged.Gated);
        Assert.AreEqual(2L * NewTokens, unmerged.MatchingTokens);
        Assert.IsNull(unmerged.FirstDifferentStep);
        Assert.AreEqual(NewTokens, unmerged.ComparedSteps);
        CollectionAssert.AreEqual(new long[] { NewTokens, 2, f.Lm.Vocab }, unmerged.Logits.Shape.ToArray());
        Assert.IsLessThan(1e-4, unmerged.Logits.MaxAbsError);
        Assert.IsFalse(d.Comparisons.Single(c => c.Reference == ModelRole.Base).Gated);
        var gate = report.Gates.Single(g => g.Gate == "decode-tokens");
        Assert.IsTrue(gate.Enabled && gate.Passed, gate.Detail);
        Assert.IsTrue(report.Comparisons.All(c => c.Outputs.Any(o => o.Name == "present.0.key")), "the prefill comparison covers the cache outputs too");
    }

    [TestMethod]
    public void Decode_MergedFromAnotherAdapter_FailsTheDecodeGates()
    {
        using var f = new TestFiles();
        // The planted difference: merged with the adapter's update subtracted instead of added.
        float[] wrong = [.. f.Lm.W.Select((w, i) => 2 * w - f.Lm.MergedW()[i])];
        var request = new ValidationRequest(f.Merged(g => Past(g with { Weight = wrong })), f.Unmerged(Past));

        var report = Validator.Run(request, Decode with { Runs = 0 });

        Assert.AreEqual(ValidationStatus.GateFailed, report.Status);
        var d = report.Decode!;
        long[] prompt = [.. d.PromptIds.Take(5)];
        var expectedWrong = f.Lm.GreedyPast(wrong, prompt, NewTokens);
        var expectedRight = f.Lm.GreedyPast(f.Lm.MergedW(), prompt, NewTokens);
        Assert.IsFalse(expectedWrong.SequenceEqual(expectedRight), "precondition: the planted adapter changes the fp64 greedy tokens");
        var c = d.Comparisons.Single();
        Assert.IsLessThan(2L * NewTokens, c.MatchingTokens);
        Assert.IsNotNull(c.FirstDifferentStep);
        Assert.AreEqual(c.FirstDifferentStep + 1, c.ComparedSteps);
        Assert.IsTrue(report.Failures.Any(x => x.Gate == "decode-tokens" && x.Comparison == "merged vs unmerged (decode)"), string.Join("\n", report.Failures.Select(x => x.Message)));
        Assert.IsTrue(report.Failures.Any(x => x.Gate == "tolerance" && x.Comparison == "merged vs unmerged (decode)"), "the per-step logits are gated too");
    }

    [TestMethod]
    public void Decode_OnAGraphWithoutKeyValueCache_IsBadInputNamingTheFileAndTheOption()
    {
        using var f = new TestFiles();
        string merged = f.Merged();

        var e = BadInput.Throws(() => Validator.Run(new ValidationRequest(merged, f.Unmerged()), Decode));

        Assert.DoesNotContain("\n", e.Message);
        StringAssert.StartsWith(e.Message, merged);
        StringAssert.Contains(e.Message, "--decode-tokens");
        StringAssert.Contains(e.Message, "without a key/value cache");
    }

    [TestMethod]
    public void Decode_OneToken_IsARefusedOption()
    {
        using var f = new TestFiles();

        var e = BadInput.Throws(() => Validator.Run(new ValidationRequest(f.Merged(Past), f.Unmerged(Past)), Decode with { DecodeTokens = 1 }));

        StringAssert.Contains(e.Message, "DecodeTokens");
    }

    [TestMethod]
    public void Reports_ShowTheDecodeTablesAndThePerStepChart()
    {
        using var f = new TestFiles();
        var report = Validator.Run(new ValidationRequest(f.Merged(Past), f.Unmerged(Past)) { BasePath = f.Base(Past) }, Decode);

        string md = ReportWriter.ToMarkdown(report);
        string html = ReportWriter.ToHtml(report);

        StringAssert.Contains(md, "### Decode (key/value cache)");
        StringAssert.Contains(md, $"| merged vs unmerged (decode) | {2 * NewTokens} of {2 * NewTokens} | none | {NewTokens} |");
        var merged = report.Decode!.Models[0];
        StringAssert.Contains(md, $"| merged | {Fmt(merged.FirstToken.P50Ms)} |");
        StringAssert.Contains(html, "<h2>Decode (key/value cache)</h2>");
        StringAssert.Contains(html, "alt=\"Latency per decode step\" src=\"data:image/png;base64,");
        Assert.DoesNotContain("Decode (key/value cache)", ReportWriter.ToMarkdown(report with { Decode = null }));
    }

    private static string Fmt(double ms) => ms.ToString(ms < 10 ? "0.000" : "0.0", System.Globalization.CultureInfo.InvariantCulture);
}
