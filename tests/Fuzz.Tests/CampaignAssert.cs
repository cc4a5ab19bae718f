namespace OnnxLora.Fuzz.Tests;

/// <summary>The two checks every campaign makes: a fixed-seed corpus that reproduces, and a time-boxed random run.</summary>
internal static class CampaignAssert
{
    /// <summary>Seed and size of the fixed corpus; change them only together with a note in the test's history.</summary>
    public const int CorpusSeed = 20261129;

    public const int CorpusSize = 300;

    /// <summary>
    /// Runs the fixed corpus twice: each run must stay in bounds (undocumented exceptions and memory fail
    /// inside <see cref="Campaign"/>), reach both the accepting and the rejecting path, name a file in
    /// every rejection, and give the same outcome, message included, for every input.
    /// </summary>
    public static void CorpusReproduces(FuzzTarget target, TestContext context)
    {
        var first = Campaign.RunCorpus(target, CorpusSeed, CorpusSize);
        var second = Campaign.RunCorpus(target, CorpusSeed, CorpusSize);
        Report(context, $"{target.Name} corpus (seed {CorpusSeed})", first);

        Assert.IsGreaterThan(0, first.Accepted, $"{target.Name}: no mutant of the corpus was accepted; the corpus no longer reaches the reading code.");
        Assert.IsGreaterThan(0, first.Rejected, $"{target.Name}: no mutant of the corpus was rejected; the mutator no longer breaks the format.");
        // The documented exceptions promise a message that names the file (a config inconsistent with
        // the weights may be reported against either of the adapter's files).
        foreach (string rejected in first.Outcomes.Where(o => o != "accepted"))
        {
            StringAssert.Contains(rejected, "<dir>/", $"{target.Name}: a rejection that names no file: {rejected}");
        }
        Assert.HasCount(first.Outcomes.Count, second.Outcomes);
        for (int i = 0; i < first.Outcomes.Count; i++)
        {
            Assert.AreEqual(first.Outcomes[i], second.Outcomes[i], $"{target.Name}: corpus input {i} (seed {CorpusSeed}) gave another outcome on the second run: '{first.Outcomes[i]}' then '{second.Outcomes[i]}'.");
        }
        RequireResidentMemoryMeasured(target, first);
    }

    /// <summary>Random mutants for ONNXLORA_FUZZ_SECONDS; bounds are checked per input inside <see cref="Campaign"/>.</summary>
    public static void TimedCampaignStaysInBounds(FuzzTarget target, TestContext context)
    {
        var r = Campaign.RunTimed(target);
        Report(context, $"{target.Name} random ({Mutator.Seconds} s)", r);
        Assert.IsGreaterThan(0, r.Rejected, $"{target.Name}: no random mutant was rejected; the mutator no longer breaks the format.");
        RequireResidentMemoryMeasured(target, r);
    }

    /// <summary>Everything else was checked; the resident-memory bound could not be (no /proc/self/status): say so.</summary>
    private static void RequireResidentMemoryMeasured(FuzzTarget target, CampaignResult r)
    {
        if (r.PeakRssGrowthBytes is null)
        {
            Assert.Inconclusive($"{target.Name}: every bound but resident memory held; the resident-memory bound was not checked (no /proc/self/status on this system).");
        }
    }

    private static void Report(TestContext context, string what, CampaignResult r) =>
        context.WriteLine($"{what}: {r.Tried} inputs, {r.Accepted} accepted, {r.Rejected} rejected with a documented exception; " +
            $"at most {r.MaxAllocatedBytes:N0} managed bytes allocated by one open; peak RSS growth {(r.PeakRssGrowthBytes is { } g ? $"{g:N0} bytes" : "not measured")}");
}
