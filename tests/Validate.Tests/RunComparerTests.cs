using OnnxLora.Validate.Internals;

namespace OnnxLora.Validate.Tests;

[TestClass]
public sealed class RunComparerTests
{
    private static readonly RunComparisonOptions FivePercent = RunComparisonOptions.Default with { MaxRegression = 0.05 };

    private static RunComparison Pair(double[] baseline, double[] candidate, RunComparisonOptions? options = null) =>
        RunComparer.Compare([SyntheticRuns.Compared("a", SyntheticRuns.Report(baseline)), SyntheticRuns.Compared("b", SyntheticRuns.Report(candidate))], options ?? FivePercent);

    [TestMethod]
    public void Compare_PlantedTenPercentSlowdown_IsFlaggedInEveryOfTwentyPairs()
    {
        for (int seed = 0; seed < 20; seed++)
        {
            var c = Pair(SyntheticRuns.Latencies(50, 4.0, 1.0, 1000 + seed), SyntheticRuns.Latencies(50, 4.0, 1.10, 2000 + seed));

            var merged = c.Latency.Single(l => l.Report == 1);
            Assert.AreEqual(LatencyVerdict.Regression, merged.Verdict, $"seed {seed}: ratio {merged.Ratio}");
            Assert.AreEqual(1.10, merged.Ratio!.Ratio, 0.04, $"seed {seed}");
            Assert.IsFalse(c.Passed);
            Assert.HasCount(1, c.Regressions);
        }
    }

    [TestMethod]
    public void Compare_TwoRunsOfTheSameModel_NoFalseAlarmInTwentyPairs()
    {
        int alarms = 0;
        for (int seed = 0; seed < 20; seed++)
        {
            var c = Pair(SyntheticRuns.Latencies(50, 4.0, 1.0, 3000 + seed), SyntheticRuns.Latencies(50, 4.0, 1.0, 4000 + seed));
            alarms += c.Passed ? 0 : 1;
        }
        Assert.AreEqual(0, alarms);
    }

    [TestMethod]
    public void Compare_ReportWithItself_RatioIsOneAndTheIntervalContainsIt()
    {
        var report = SyntheticRuns.Report(SyntheticRuns.Latencies(40, 2.5, 1.0, 5), SyntheticRuns.Latencies(40, 2.0, 1.0, 6));

        var c = RunComparer.Compare([SyntheticRuns.Compared("a", report), SyntheticRuns.Compared("a again", report)], FivePercent);

        Assert.IsTrue(c.Passed);
        foreach (var row in c.Latency.Where(l => l.Report == 1))
        {
            Assert.AreEqual(1.0, row.Ratio!.Ratio);
            Assert.IsLessThan(1.0, row.Ratio.Low);
            Assert.IsGreaterThan(1.0, row.Ratio.High);
            Assert.AreEqual(LatencyVerdict.NoSignificantChange, row.Verdict);
        }
        Assert.IsEmpty(c.Differences);
    }

    [TestMethod]
    public void Compare_RowsPerRoleThenReport_WithMediansOfTheSamples()
    {
        double[] a = [3, 1, 2], b = [10, 30, 20, 40];
        var c = RunComparer.Compare(
        [
            SyntheticRuns.Compared("a", SyntheticRuns.Report(a, b)),
            SyntheticRuns.Compared("b", SyntheticRuns.Report(b, a)),
            SyntheticRuns.Compared("c", SyntheticRuns.Report(a)),
        ]);

        CollectionAssert.AreEqual(new[] { "merged a", "merged b", "merged c", "base a", "base b" },
            c.Latency.Select(l => $"{Fmt.Role(l.Role)} {l.Label}").ToArray());
        Assert.AreEqual(2.0, c.Latency[0].Median.MedianMs);
        Assert.AreEqual(25.0, c.Latency[1].Median.MedianMs, "even count: the mean of the two middle values");
        Assert.AreEqual(12.5, c.Latency[1].Ratio!.Ratio);
        Assert.AreEqual(LatencyVerdict.Baseline, c.Latency[0].Verdict);
        Assert.IsNull(c.Latency[0].Ratio);
        Assert.AreEqual(LatencyVerdict.Slower, c.Latency[1].Verdict, "no MaxRegression: significantly slower is not a regression");
        Assert.IsTrue(c.Passed);
        Assert.AreEqual(LatencyVerdict.Faster, c.Latency[4].Verdict);
    }

    /// <summary>Merged and base timed in the same rounds: merged = base × (1.02 ± 0.5%), both × <paramref name="machine"/>; merged also × <paramref name="slowdown"/>.</summary>
    private static ValidationReport Interleaved(int seed, double machine, double slowdown)
    {
        double[] baseModel = [.. SyntheticRuns.Latencies(60, 3.0, machine, seed)];
        var rng = new Random(seed + 1);
        double[] merged = [.. baseModel.Select(b => b * 1.02 * slowdown * (1 + 0.005 * (rng.NextDouble() - 0.5)))];
        return SyntheticRuns.Report(merged, baseModel);
    }

    [TestMethod]
    public void Compare_WholeMachineTenPercentSlower_IsNoRegressionRelativeToTheBaseModel()
    {
        var c = RunComparer.Compare([SyntheticRuns.Compared("a", Interleaved(1, 1.0, 1.0)), SyntheticRuns.Compared("b", Interleaved(2, 1.10, 1.0))], FivePercent);

        var merged = c.Latency.Single(l => l.Report == 1 && l.Role == ModelRole.Merged);
        Assert.IsGreaterThan(1.05, merged.Ratio!.Low, "the raw ratio sees the slower machine");
        Assert.AreEqual(1.0, merged.RelativeToBase!.Ratio, 0.01);
        Assert.AreEqual(LatencyVerdict.NoSignificantChange, merged.Verdict, "judged on the drift-corrected ratio");
        Assert.AreSame(merged.RelativeToBase, merged.Judged());
        Assert.IsTrue(c.Passed);
        var baseRow = c.Latency.Single(l => l.Report == 1 && l.Role == ModelRole.Base);
        Assert.IsNull(baseRow.RelativeToBase);
        Assert.AreEqual(LatencyVerdict.Regression, baseRow.Verdict, "the base model's own row shows the machine's drift, but only merged models gate");
    }

    [TestMethod]
    public void Compare_MergedTenPercentSlowerOnAFasterMachine_IsARegressionRelativeToTheBaseModel()
    {
        var c = RunComparer.Compare([SyntheticRuns.Compared("a", Interleaved(1, 1.0, 1.0)), SyntheticRuns.Compared("b", Interleaved(2, 0.93, 1.10))], FivePercent);

        var merged = c.Latency.Single(l => l.Report == 1 && l.Role == ModelRole.Merged);
        Assert.IsLessThan(1.05, merged.Ratio!.Low, "the raw ratio alone would miss it");
        Assert.AreEqual(1.10, merged.RelativeToBase!.Ratio, 0.01);
        Assert.AreEqual(LatencyVerdict.Regression, merged.Verdict);
        Assert.IsFalse(c.Passed);
    }

    [TestMethod]
    public void Compare_OtherOnnxRuntimeOrBaseModel_JudgesTheRawRatio()
    {
        var a = Interleaved(1, 1.0, 1.0);
        var b = Interleaved(2, 1.10, 1.0);
        var otherRuntime = b with { OnnxRuntimeVersion = "1.32.0" };
        var otherBase = b with { Models = [.. b.Models.Select(m => m.Role == ModelRole.Base ? m with { ContentSha256 = new string('f', 64) } : m)] };

        foreach (var report in new[] { otherRuntime, otherBase })
        {
            var c = RunComparer.Compare([SyntheticRuns.Compared("a", a), SyntheticRuns.Compared("b", report)], FivePercent);

            var merged = c.Latency.Single(l => l.Report == 1 && l.Role == ModelRole.Merged);
            Assert.IsNull(merged.RelativeToBase);
            Assert.AreEqual(LatencyVerdict.Regression, merged.Verdict, "no valid control: the raw ratio is judged");
        }
    }

    [TestMethod]
    public void Compare_IsDeterministic_AndTheSeedDecidesTheResamples()
    {
        double[] a = SyntheticRuns.Latencies(30, 1, 1, 1), b = SyntheticRuns.Latencies(30, 1, 1.02, 2);

        var first = Pair(a, b).Latency[1].Ratio;
        var again = Pair(a, b).Latency[1].Ratio;
        var otherSeed = Pair(a, b, FivePercent with { Seed = 99 }).Latency[1].Ratio;

        Assert.AreEqual(first, again);
        Assert.AreNotEqual(first, otherSeed);
        Assert.AreEqual(first!.Ratio, otherSeed!.Ratio, "the point estimate does not depend on the resamples");
    }

    /// <summary>
    /// The bootstrap distribution of a median of n distinct values (n odd) is known exactly: the resample's median is at
    /// or below the k-th smallest value when at least (n + 1) / 2 of the n draws fall at or below it, a binomial tail
    /// with p = k / n. The O(n) counting shortcut in <see cref="Bootstrap.Medians"/> must reproduce it.
    /// </summary>
    [TestMethod]
    public void BootstrapMedians_MatchTheExactBootstrapDistribution()
    {
        const int n = 15, resamples = 40_000;
        double[] samples = [.. Enumerable.Range(1, n).Select(i => i * 1.5).Reverse()];

        double[] medians = Bootstrap.Medians(samples, resamples, seed: 7);

        double worst = 0;
        for (int k = 1; k <= n; k++)
        {
            double value = k * 1.5;
            double empirical = medians.Count(m => m <= value) / (double)resamples;
            double exact = BinomialUpperTail(n, (n + 1) / 2, k / (double)n);
            worst = Math.Max(worst, Math.Abs(empirical - exact));
        }
        Assert.IsLessThan(0.01, worst, "largest CDF difference (Monte Carlo error is about 0.0025)");
    }

    [TestMethod]
    public void RatioInterval_CoversTheTrueRatio_InAtLeastNinetyPercentOfTrials()
    {
        int covered = 0;
        const int trials = 150;
        for (int t = 0; t < trials; t++)
        {
            // Without a run offset the true ratio of medians is the planted one.
            var rng = new Random(t);
            double[] Run(double scale) => [.. Enumerable.Range(0, 40).Select(_ => scale * Math.Exp(0.05 * Normal(rng)))];
            var c = Pair(Run(1.0), Run(1.07));
            var r = c.Latency[1].Ratio!;
            covered += r.Low <= 1.07 && 1.07 <= r.High ? 1 : 0;
        }
        Assert.IsGreaterThanOrEqualTo(0.90 * trials, covered, $"{covered} of {trials}");
    }

    [TestMethod]
    [DataRow(1.10, 1.06, 1.14, 0.05, LatencyVerdict.Regression)]
    [DataRow(1.10, 1.04, 1.14, 0.05, LatencyVerdict.Slower)]
    [DataRow(1.10, 1.04, 1.14, null, LatencyVerdict.Slower)]
    [DataRow(1.00, 0.98, 1.02, 0.05, LatencyVerdict.NoSignificantChange)]
    [DataRow(0.90, 0.88, 0.97, 0.05, LatencyVerdict.Faster)]
    [DataRow(1.30, 1.00, 1.60, 0.00, LatencyVerdict.NoSignificantChange)]
    public void Verdict_FollowsTheIntervalAndTheTolerance(double ratio, double low, double high, double? max, LatencyVerdict expected) =>
        Assert.AreEqual(expected, RunComparer.Verdict(new RatioEstimate(ratio, low, high), max));

    [TestMethod]
    [DataRow("machine.cpuModel")]
    [DataRow("machine.logicalCores")]
    [DataRow("machine.memoryBytes")]
    [DataRow("machine.gpu.driver")]
    [DataRow("provider.used")]
    [DataRow("provider.options")]
    [DataRow("provider.session.intraOpThreads")]
    [DataRow("provider.session.cpuMemArena")]
    [DataRow("inputs.tensors[input_ids]")]
    public void Compare_OtherMachineOrSettings_IsRefusedNamingTheFileAndTheField(string field)
    {
        var a = SyntheticRuns.Report(SyntheticRuns.Latencies(20, 1, 1, 1));
        var b = Change(a with { Latency = SyntheticRuns.Report(SyntheticRuns.Latencies(20, 1, 1, 2)).Latency }, field);

        var e = BadInput.Throws(() => RunComparer.Compare([SyntheticRuns.Compared("a", a), SyntheticRuns.Compared("b", b)], FivePercent));

        StringAssert.StartsWith(e.Message, "/runs/b/validation.json: field " + field + ": found ");
        StringAssert.Contains(e.Message, "as in the baseline /runs/a/validation.json");
        StringAssert.Contains(e.Message, "--allow-different-machines");
        Assert.DoesNotContain("\n", e.Message);
    }

    [TestMethod]
    public void Compare_AllowDifferentMachines_ComparesAndListsEveryDifference()
    {
        var a = SyntheticRuns.Report(SyntheticRuns.Latencies(20, 1, 1, 1));
        var b = Change(Change(a, "machine.cpuModel"), "provider.used") with { OnnxRuntimeVersion = "1.32.0" };

        var c = RunComparer.Compare([SyntheticRuns.Compared("a", a), SyntheticRuns.Compared("b", b)], FivePercent with { AllowDifferentMachines = true });

        Assert.IsTrue(c.MachinesDiffer);
        CollectionAssert.AreEquivalent(new[] { "machine.cpuModel", "provider.used", "onnxRuntimeVersion" }, c.Differences.Select(d => d.Field).ToArray());
        var cpu = c.Differences.Single(d => d.Field == "machine.cpuModel");
        Assert.AreEqual((DifferenceKind.Machine, "b", "AMD EPYC 7763 64-Core Processor", "Other CPU"), (cpu.Kind, cpu.Report, cpu.Baseline, cpu.Found));
        Assert.AreEqual(DifferenceKind.Software, c.Differences.Single(d => d.Field == "onnxRuntimeVersion").Kind);
    }

    [TestMethod]
    public void Compare_SoftwareAndSmallMemoryDifferences_AreListedNotRefused()
    {
        var a = SyntheticRuns.Report(SyntheticRuns.Latencies(20, 1, 1, 1));
        var b = a with
        {
            ToolVersion = "2.0.0",
            Machine = a.Machine with { MemoryBytes = (long)(a.Machine.MemoryBytes!.Value * 0.99), Os = "Linux 6.9" },
        };

        var c = RunComparer.Compare([SyntheticRuns.Compared("a", a), SyntheticRuns.Compared("b", b)], FivePercent);

        Assert.IsFalse(c.MachinesDiffer);
        CollectionAssert.AreEquivalent(new[] { "toolVersion", "machine.os" }, c.Differences.Select(d => d.Field).ToArray());
    }

    [TestMethod]
    public void Compare_ReportWithoutLatency_IsRefusedNamingTheField()
    {
        var a = SyntheticRuns.Report(SyntheticRuns.Latencies(20, 1, 1, 1));

        var e = BadInput.Throws(() => RunComparer.Compare([SyntheticRuns.Compared("a", a), SyntheticRuns.Compared("b", a with { Latency = null })]));

        StringAssert.StartsWith(e.Message, "/runs/b/validation.json: field latency: found null");
    }

    [TestMethod]
    public void Compare_SampleThatIsNotATime_IsRefusedNamingTheSample()
    {
        double[] samples = [1, 2, double.NaN, 4];

        var e = BadInput.Throws(() => Pair([1, 2, 3], samples));

        StringAssert.StartsWith(e.Message, "/runs/b/validation.json: field latency.models[0].samplesMs[2]: found null, expected a positive time");
    }

    [TestMethod]
    public void Compare_FewerThanTwoReportsOrBadOptions_AreOptionErrors()
    {
        var a = SyntheticRuns.Compared("a", SyntheticRuns.Report([1, 2, 3]));

        StringAssert.Contains(BadInput.Throws(() => RunComparer.Compare([a])).Message, "at least two validation reports");
        StringAssert.Contains(BadInput.Throws(() => RunComparer.Compare([a, a], FivePercent with { MaxRegression = -0.1 })).Message, "option MaxRegression");
        StringAssert.Contains(BadInput.Throws(() => RunComparer.Compare([a, a], FivePercent with { Confidence = 1 })).Message, "option Confidence");
        StringAssert.Contains(BadInput.Throws(() => RunComparer.Compare([a, a], FivePercent with { Resamples = 10 })).Message, "option Resamples");
    }

    /// <summary>Changes one compared field of a report.</summary>
    internal static ValidationReport Change(ValidationReport r, string field) => field switch
    {
        "machine.cpuModel" => r with { Machine = r.Machine with { CpuModel = "Other CPU" } },
        "machine.logicalCores" => r with { Machine = r.Machine with { LogicalCores = r.Machine.LogicalCores * 2 } },
        "machine.memoryBytes" => r with { Machine = r.Machine with { MemoryBytes = r.Machine.MemoryBytes / 2 } },
        "machine.gpu.driver" => r with { Machine = r.Machine with { Gpu = r.Machine.Gpu! with { Driver = "535.0" } } },
        "provider.used" => r with { Provider = r.Provider with { Used = "CUDAExecutionProvider" } },
        "provider.options" => r with { Provider = r.Provider with { Options = [new ProviderOption("device_id", "0")] } },
        "provider.session.intraOpThreads" => r with { Provider = r.Provider with { Session = r.Provider.Session with { IntraOpThreads = 1 } } },
        "provider.session.cpuMemArena" => r with { Provider = r.Provider with { Session = r.Provider.Session with { CpuMemArena = !r.Provider.Session.CpuMemArena } } },
        "inputs.tensors[input_ids]" => r with
        {
            Inputs = r.Inputs with { Tensors = [.. r.Inputs.Tensors.Select(t => t.Name == "input_ids" ? t with { Shape = [2, 128] } : t)] },
        },
        _ => throw new ArgumentException(field),
    };

    private static double Normal(Random rng) => Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());

    /// <summary>P(X ≥ m) for X ~ Binomial(n, p), summed directly in double precision.</summary>
    private static double BinomialUpperTail(int n, int m, double p)
    {
        double sum = 0;
        for (int j = m; j <= n; j++)
        {
            double c = 1;
            for (int i = 0; i < j; i++)
            {
                c = c * (n - i) / (i + 1);
            }
            sum += c * Math.Pow(p, j) * Math.Pow(1 - p, n - j);
        }
        return sum;
    }
}
