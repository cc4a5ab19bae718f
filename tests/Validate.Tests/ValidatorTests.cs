using OnnxLora.Core;

namespace OnnxLora.Validate.Tests;

[TestClass]
public sealed class ValidatorTests
{
    [TestMethod]
    public void Run_IdenticalModels_PassWithZeroError()
    {
        using var f = new TestFiles();
        string a = f.Merged();
        string b = f.Merged(name: "copy.onnx");

        var report = Validator.Run(new ValidationRequest(a, b), TestFiles.Cpu);

        Assert.AreEqual(ValidationStatus.Pass, report.Status);
        var c = report.Comparisons.Single();
        Assert.AreEqual(ModelRole.Unmerged, c.Reference);
        Assert.IsTrue(c.Gated);
        var o = c.Outputs.Single();
        Assert.AreEqual("logits", o.Name);
        CollectionAssert.AreEqual(new long[] { 2, 6, f.Lm.Vocab }, o.Shape.ToArray());
        Assert.AreEqual(0.0, o.MaxAbsError);
        Assert.AreEqual(0.0, o.MaxRelError);
        Assert.AreEqual(0.0, o.RmsError);
        Assert.AreEqual(1.0, o.CosineSimilarity, 1e-12);
        Assert.AreEqual(0L, o.BeyondTolerance);
        Assert.AreEqual(1.0, o.Top1Agreement);
        Assert.AreEqual(12L, o.Top1Positions);
        Assert.IsNull(o.WorstIndex);
        Assert.AreEqual(0, report.Failures.Count);
    }

    [TestMethod]
    public void Run_MergedVsUnmergedLora_PassesWithRoundingErrorAndBaseIsReportedNotGated()
    {
        using var f = new TestFiles();
        var request = new ValidationRequest(f.Merged(), f.Unmerged()) { BasePath = f.Base() };

        var report = Validator.Run(request, TestFiles.Cpu);

        Assert.AreEqual(ValidationStatus.Pass, report.Status, string.Join("\n", report.Failures.Select(x => x.Message)));
        var unmerged = report.Comparisons.Single(c => c.Reference == ModelRole.Unmerged).Outputs.Single();
        Assert.IsLessThan(1e-4, unmerged.MaxAbsError);
        var vsBase = report.Comparisons.Single(c => c.Reference == ModelRole.Base);
        Assert.IsFalse(vsBase.Gated);
        Assert.IsGreaterThan(1e-2, vsBase.Outputs.Single().MaxAbsError, "the adapter changes the logits");
        Assert.IsGreaterThan(0L, vsBase.Outputs.Single().BeyondTolerance, "beyond-tolerance elements are counted but not gated");
        Assert.AreEqual(3, report.Models.Count);
        Assert.IsFalse(report.Warnings.Any(w => w.Contains("no visible effect", StringComparison.Ordinal)));
    }

    [TestMethod]
    public void Run_MergedEqualsBase_WarnsThatTheAdapterHasNoEffect()
    {
        using var f = new TestFiles();
        var request = new ValidationRequest(f.Base(name: "m.onnx"), f.Base(name: "u.onnx")) { BasePath = f.Base() };

        var report = Validator.Run(request, TestFiles.Cpu);

        Assert.IsTrue(report.Warnings.Any(w => w.Contains("no visible effect", StringComparison.Ordinal)));
    }

    [TestMethod]
    public void Run_WeightScaledByTwo_FailsToleranceGateAndNamesTheOutput()
    {
        using var f = new TestFiles();
        float[] doubled = f.Lm.MergedW().Select(x => x * 2).ToArray();
        string merged = f.Merged(g => g with { Weight = doubled, OutputName = "scores" });
        string unmerged = f.Unmerged(g => g with { OutputName = "scores" });

        var report = Validator.Run(new ValidationRequest(merged, unmerged), TestFiles.Cpu);

        Assert.AreEqual(ValidationStatus.GateFailed, report.Status);
        Assert.IsFalse(report.Passed);
        var failure = report.Failures.Single(x => x.Gate == "tolerance");
        Assert.AreEqual("scores", failure.Output);
        Assert.AreEqual("merged vs unmerged", failure.Comparison);
        Assert.AreEqual(report.Options.Atol, failure.Limit);
        Assert.AreEqual(report.Comparisons[0].Outputs[0].MaxAbsError, failure.Value);
        StringAssert.Contains(failure.Message, "output scores");
        StringAssert.Contains(failure.Message, "beyond atol");
        Assert.IsFalse(report.Gates.Single(g => g.Gate == "tolerance").Passed);
    }

    [TestMethod]
    public void Run_PerturbedWeight_MetricsMatchIndependentDoublePrecisionComputation()
    {
        using var f = new TestFiles();
        var lm = f.Lm;
        float[] merged = lm.MergedW();
        var noise = TinyLm.Fill(new Random(99), merged.Length, 0.05);
        float[] perturbed = merged.Zip(noise, (x, n) => x + n).ToArray();
        long[][] ids = [[1, 5, 9, 47, 0, 3], [2, 2, 30, 31, 32, 33]];
        long[][] mask = [[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]];
        string inputs = f.JsonInputs(ids, mask);

        var report = Validator.Run(
            new ValidationRequest(f.Merged(g => g with { Weight = perturbed }), f.Merged(name: "ref.onnx")),
            TestFiles.Cpu with { InputFiles = [inputs], Atol = 1e-2, Rtol = 0 });

        long[] flatIds = ids.SelectMany(r => r).ToArray();
        long[] flatMask = mask.SelectMany(r => r).ToArray();
        double[] a = lm.Logits(perturbed, flatIds, flatMask);
        double[] r = lm.Logits(merged, flatIds, flatMask);
        double maxAbs = 0, maxRel = 0, sumSq = 0, dot = 0, na = 0, nr = 0;
        long beyond = 0;
        for (int i = 0; i < a.Length; i++)
        {
            double d = Math.Abs(a[i] - r[i]);
            maxAbs = Math.Max(maxAbs, d);
            maxRel = Math.Max(maxRel, d / Math.Max(Math.Abs(r[i]), 1e-6));
            sumSq += d * d;
            dot += a[i] * r[i];
            na += a[i] * a[i];
            nr += r[i] * r[i];
            beyond += d > 1e-2 ? 1 : 0;
        }
        var o = report.Comparisons.Single().Outputs.Single();
        Assert.AreEqual(maxAbs, o.MaxAbsError, 1e-5 * maxAbs);
        Assert.AreEqual(Math.Sqrt(sumSq / a.Length), o.RmsError, 1e-5 * maxAbs);
        Assert.AreEqual(dot / Math.Sqrt(na * nr), o.CosineSimilarity, 1e-6);
        Assert.AreEqual(a.Length, (int)o.Elements);
        // Masked positions are exactly zero in both, so the relative error there is 0/1e-6 = 0.
        Assert.AreEqual(maxRel, o.MaxRelError, 1e-3 * maxRel);
        Assert.AreEqual(beyond, o.BeyondTolerance, Math.Max(2, beyond / 100), "elements at the boundary may round either way in float32");
    }

    [TestMethod]
    public void Run_Top1Agreement_MatchesIndependentArgmax()
    {
        using var f = new TestFiles(vocab: 32, hidden: 8, rank: 2, seed: 3);
        var lm = f.Lm;
        float[] merged = lm.MergedW();
        var noise = TinyLm.Fill(new Random(5), merged.Length, 0.6);
        float[] other = merged.Zip(noise, (x, n) => x + n).ToArray();
        var rng = new Random(11);
        long[][] ids = [.. Enumerable.Range(0, 4).Select(_ => Enumerable.Range(0, 10).Select(_ => (long)rng.Next(32)).ToArray())];
        long[][] mask = [.. ids.Select(r => r.Select(_ => 1L).ToArray())];
        string inputs = f.JsonInputs(ids, mask);

        var report = Validator.Run(
            new ValidationRequest(f.Merged(g => g with { Weight = other }), f.Merged(name: "ref.onnx")),
            TestFiles.Cpu with { InputFiles = [inputs], MinTop1 = 0.999 });

        long[] flatIds = ids.SelectMany(r => r).ToArray();
        long[] flatMask = mask.SelectMany(r => r).ToArray();
        double[] a = lm.Logits(other, flatIds, flatMask);
        double[] r = lm.Logits(merged, flatIds, flatMask);
        int agree = 0;
        for (int p = 0; p < flatIds.Length; p++)
        {
            agree += ArgMax(a, p * 32, 32) == ArgMax(r, p * 32, 32) ? 1 : 0;
        }
        var o = report.Comparisons.Single().Outputs.Single();
        Assert.AreEqual(40L, o.Top1Positions);
        Assert.AreEqual(agree / 40.0, o.Top1Agreement!.Value, 1e-12);
        Assert.IsTrue(agree is > 0 and < 40, $"the test needs partial agreement, got {agree}/40");
        var top1Failure = report.Failures.Single(x => x.Gate == "min-top1");
        Assert.AreEqual("logits", top1Failure.Output);
        Assert.AreEqual(0.999, top1Failure.Limit);
    }

    [TestMethod]
    public void Run_Float16Outputs_AreComparedAsFloat()
    {
        using var f = new TestFiles();
        var report = Validator.Run(
            new ValidationRequest(f.Merged(g => g with { Float16Output = true }), f.Unmerged(g => g with { Float16Output = true })),
            TestFiles.Cpu with { Atol = 1e-2, Rtol = 1e-2 });

        var o = report.Comparisons.Single().Outputs.Single();
        Assert.AreEqual(DType.F16, o.ActualType);
        Assert.AreEqual(DType.F16, o.ReferenceType);
        Assert.IsGreaterThan(0.5, o.ReferenceMaxAbs, "values were converted, not reinterpreted");
        Assert.IsLessThan(1e2, o.ReferenceMaxAbs);
        Assert.IsGreaterThan(0.9999, o.CosineSimilarity);
        Assert.AreEqual(ValidationStatus.Pass, report.Status);
    }

    [TestMethod]
    public void Run_NaNInWeights_FailsFiniteGate()
    {
        using var f = new TestFiles();
        float[] w = f.Lm.MergedW();
        w[3] = float.NaN;

        var report = Validator.Run(new ValidationRequest(f.Merged(g => g with { Weight = w }), f.Unmerged()), TestFiles.Cpu);

        Assert.AreEqual(ValidationStatus.GateFailed, report.Status);
        var failure = report.Failures.First(x => x.Gate == "finite");
        Assert.AreEqual("logits", failure.Output);
        Assert.IsGreaterThan(0L, report.Comparisons[0].Outputs[0].NonFiniteActual);
        Assert.AreEqual(0L, report.Comparisons[0].Outputs[0].NonFiniteReference);
    }

    [TestMethod]
    public void Run_EagerReference_IsComparedAndGated()
    {
        using var f = new TestFiles();
        var lm = f.Lm;
        float[] merged = lm.MergedW();
        IReadOnlyDictionary<string, InputTensor>? seen = null;
        IReadOnlyDictionary<string, float[]> Eager(IReadOnlyDictionary<string, InputTensor> inputs)
        {
            seen = inputs;
            var logits = lm.Logits(merged, inputs["input_ids"].GetData<long>().ToArray(), inputs["attention_mask"].GetData<long>().ToArray());
            return new Dictionary<string, float[]> { ["logits"] = logits.Select(x => (float)x).ToArray() };
        }

        var report = Validator.Run(new ValidationRequest(f.Merged(), null) { EagerReference = Eager }, TestFiles.Cpu);

        Assert.IsNotNull(seen);
        var c = report.Comparisons.Single();
        Assert.AreEqual(ModelRole.Eager, c.Reference);
        Assert.AreEqual("merged vs eager", c.Name);
        Assert.IsTrue(c.Gated);
        Assert.IsLessThan(1e-4, c.Outputs.Single().MaxAbsError);
        Assert.AreEqual(ValidationStatus.Pass, report.Status);
    }

    [TestMethod]
    public void Run_EagerReferenceWithWrongLength_ThrowsNamingTheOutput()
    {
        using var f = new TestFiles();
        var request = new ValidationRequest(f.Merged(), null)
        {
            EagerReference = _ => new Dictionary<string, float[]> { ["logits"] = new float[5] },
        };

        var e = BadInput.Throws(() => Validator.Run(request, TestFiles.Cpu));
        StringAssert.Contains(e.Message, "eager reference");
        StringAssert.Contains(e.Message, "output logits");
        StringAssert.Contains(e.Message, "found 5 values");
    }

    [TestMethod]
    public void Run_ModelsWithDifferentOutputs_ThrowsNamingTheModel()
    {
        using var f = new TestFiles();
        string unmerged = f.Unmerged(g => g with { OutputName = "scores" });

        var e = BadInput.Throws(() => Validator.Run(new ValidationRequest(f.Merged(), unmerged), TestFiles.Cpu));
        StringAssert.Contains(e.Message, unmerged);
        StringAssert.Contains(e.Message, "outputs");
        StringAssert.Contains(e.Message, "scores");
    }

    [TestMethod]
    public void Run_MissingModel_IsBadInput()
    {
        using var f = new TestFiles();
        var e = BadInput.Throws(() => Validator.Run(new ValidationRequest(f.Merged(), f.File("nope.onnx")), TestFiles.Cpu));
        StringAssert.Contains(e.Message, "unmerged model not found");
        StringAssert.Contains(e.Message, "nope.onnx");
    }

    [TestMethod]
    public void Run_GarbageModel_IsBadInputNamingTheFile()
    {
        using var f = new TestFiles();
        string bad = f.File("bad.onnx");
        File.WriteAllBytes(bad, [1, 2, 3, 4, 5, 6, 7, 8]);

        var e = BadInput.Throws(() => Validator.Run(new ValidationRequest(bad, f.Unmerged()), TestFiles.Cpu));
        StringAssert.StartsWith(e.Message, bad);
        StringAssert.Contains(e.Message, "ONNX Runtime could not load the model");
    }

    [TestMethod]
    public void Run_ModelFailsOnTheInputs_IsBadInputNamingTheModel()
    {
        using var f = new TestFiles();
        string merged = f.Merged();

        // Token ids up to 999 index past the 48-row embedding: ORT's Gather fails at run time.
        var e = BadInput.Throws(() =>
            Validator.Run(new ValidationRequest(merged, f.Unmerged()), TestFiles.Cpu with { VocabSize = 1000, Batch = 4, Sequence = 32 }));

        StringAssert.StartsWith(e.Message, merged);
        StringAssert.Contains(e.Message, "ONNX Runtime failed to run the model");
    }

    [TestMethod]
    public void Run_BadOptions_AreBadInputNamingTheOption()
    {
        using var f = new TestFiles();
        var request = new ValidationRequest(f.Merged(), f.Unmerged());
        StringAssert.Contains(BadInput.Throws(() => Validator.Run(request, TestFiles.Cpu with { Batch = 0 })).Message, "option Batch");
        StringAssert.Contains(BadInput.Throws(() => Validator.Run(request, TestFiles.Cpu with { MinTop1 = 1.5 })).Message, "option MinTop1");
        StringAssert.Contains(BadInput.Throws(() => Validator.Run(request, TestFiles.Cpu with { Atol = double.NaN })).Message, "option Atol");
        StringAssert.Contains(BadInput.Throws(() => Validator.Run(request, TestFiles.Cpu with { MaxLatencyRatio = 1.1, Runs = 3 })).Message, "base model");
        StringAssert.Contains(BadInput.Throws(() => Validator.Run(new ValidationRequest(f.Merged(), null), TestFiles.Cpu)).Message, "eager reference");
    }

    [TestMethod]
    public void Run_SessionSettings_AreRecordedForAllModels()
    {
        using var f = new TestFiles();
        var options = TestFiles.Cpu with { IntraOpThreads = 1, InterOpThreads = 2, GraphOptimization = GraphOptimization.Basic, CpuMemArena = false };

        var report = Validator.Run(new ValidationRequest(f.Merged(), f.Unmerged()), options);

        Assert.AreEqual("CPUExecutionProvider", report.Provider.Used);
        Assert.IsNull(report.Provider.FallbackReason);
        Assert.AreEqual(new SessionSettings(1, 2, GraphOptimization.Basic, "sequential", CpuMemArena: false), report.Provider.Session);
        Assert.IsTrue(report.Models.All(m => m.SessionCreateMs > 0));
    }

    [TestMethod]
    public void Run_ExternalData_IsCountedInModelSize()
    {
        using var f = new TestFiles();
        string merged = f.Merged(g => g with { ExternalWeightFile = "merged.weights.bin" });

        var report = Validator.Run(new ValidationRequest(merged, f.Unmerged()), TestFiles.Cpu);

        var m = report.Models.Single(x => x.Role == ModelRole.Merged);
        Assert.AreEqual((long)f.Lm.Hidden * f.Lm.Vocab * 4, m.ExternalDataBytes);
        CollectionAssert.AreEqual(new[] { "merged.weights.bin" }, m.ExternalDataFiles.ToArray());
        Assert.AreEqual(new FileInfo(merged).Length + m.ExternalDataBytes, m.TotalBytes);
        Assert.AreEqual(0L, report.Models.Single(x => x.Role == ModelRole.Unmerged).ExternalDataBytes);
        Assert.AreEqual(ValidationStatus.Pass, report.Status);
    }

    [TestMethod]
    public void Run_Latency_ReportsStatisticsAndInterleavedRatios()
    {
        using var f = new TestFiles();
        var request = new ValidationRequest(f.Merged(), f.Unmerged()) { BasePath = f.Base() };

        var report = Validator.Run(request, TestFiles.Cpu with { Warmup = 1, Runs = 7 });

        var l = report.Latency!;
        Assert.AreEqual("runs", l.Mode);
        Assert.AreEqual(7, l.Rounds);
        Assert.AreEqual(2L, l.BatchSize);
        Assert.AreEqual(12L, l.TokensPerRun);
        CollectionAssert.AreEqual(new[] { ModelRole.Merged, ModelRole.Unmerged, ModelRole.Base }, l.Models.Select(m => m.Role).ToArray());
        foreach (var m in l.Models)
        {
            Assert.AreEqual(7, m.SamplesMs.Count);
            Assert.AreEqual(7, m.Stats.Count);
            Assert.AreEqual(m.SamplesMs.Min(), m.Stats.MinMs);
            Assert.AreEqual(m.SamplesMs.Max(), m.Stats.MaxMs);
            Assert.AreEqual(m.SamplesMs.Order().ElementAt(3), m.Stats.P50Ms, 1e-12);
            Assert.AreEqual(m.SamplesMs.Average(), m.Stats.MeanMs, 1e-9);
            Assert.AreEqual(2 / (m.Stats.MeanMs / 1000), m.SequencesPerSecond, 1e-6 * m.SequencesPerSecond);
        }
        var ratio = l.Ratios.Single(r => r.Name == "merged/base");
        Assert.AreEqual(7, ratio.Pairs);
        var perRound = l.Models[0].SamplesMs.Zip(l.Models[2].SamplesMs, (a, b) => a / b).Order().ToArray();
        Assert.AreEqual(perRound[3], ratio.Median, 1e-12);
        Assert.IsTrue(l.Ratios.Any(r => r.Name == "unmerged/merged"));
        Assert.IsGreaterThan(0L, report.PeakMemoryBytes ?? 0);
    }

    [TestMethod]
    public void Run_ModelFasterThanTheShortestSample_TimesGroupsOfRuns_AndSaysSo()
    {
        using var f = new TestFiles();
        var request = new ValidationRequest(f.Merged(), f.Unmerged()) { BasePath = f.Base() };

        var report = Validator.Run(request, TestFiles.Cpu with { Warmup = 2, Runs = 3 });

        // The test model runs in well under a millisecond: a sample of one run would be at the scheduler's mercy.
        var l = report.Latency!;
        Assert.IsGreaterThan(1, l.RunsPerSample);
        Assert.AreEqual(3, l.Rounds);
        Assert.IsTrue(l.Models.All(m => m.SamplesMs.Count == 3), "one sample (a group's mean) per round");
        StringAssert.Contains(ReportWriter.ToMarkdown(report), $"Each sample is the mean of {l.RunsPerSample} runs timed together");
        StringAssert.Contains(ReportWriter.ToJson(report), $"\"runsPerSample\": {l.RunsPerSample}");

        var cold = Validator.Run(request, TestFiles.Cpu with { Warmup = 0, Runs = 2 });
        Assert.AreEqual(1, cold.Latency!.RunsPerSample, "no warm-up run, nothing to size the group by: one run per sample");
        Assert.DoesNotContain("Each sample is the mean", ReportWriter.ToMarkdown(cold));
    }

    [TestMethod]
    [DataRow(0.1, 100)]
    [DataRow(3.0, 4)]
    [DataRow(9.99, 2)]
    [DataRow(10.0, 1)]
    [DataRow(250.0, 1)]
    [DataRow(1e-9, 10_000)]
    [DataRow(0.0, 1)]
    [DataRow(double.NaN, 1)]
    [DataRow(double.PositiveInfinity, 1)]
    public void RunsPerSample_IsEnoughForTenMilliseconds_WithinOneAndTheCap(double fastestRunMs, int expected)
    {
        Assert.AreEqual(expected, Internals.LatencyBench.RunsPerSample(fastestRunMs));
    }

    [TestMethod]
    public void Run_LatencyRatioAboveLimit_FailsLatencyGate()
    {
        using var f = new TestFiles();
        var request = new ValidationRequest(f.Merged(), f.Unmerged()) { BasePath = f.Base() };

        var report = Validator.Run(request, TestFiles.Cpu with { Runs = 3, MaxLatencyRatio = 1e-9 });

        Assert.AreEqual(ValidationStatus.GateFailed, report.Status);
        var failure = report.Failures.Single();
        Assert.AreEqual("max-latency-ratio", failure.Gate);
        Assert.AreEqual(1e-9, failure.Limit);
        Assert.AreEqual(report.Latency!.Ratios.Single(r => r.Name == "merged/base").Median, failure.Value);
    }

    [TestMethod]
    public void Run_Duration_RunsAtLeastOneRound()
    {
        using var f = new TestFiles();
        var report = Validator.Run(new ValidationRequest(f.Merged(), f.Unmerged()), TestFiles.Cpu with { Duration = TimeSpan.FromMilliseconds(50) });

        Assert.AreEqual("duration", report.Latency!.Mode);
        Assert.IsGreaterThanOrEqualTo(1, report.Latency.Rounds);
        Assert.AreEqual(0.05, report.Latency.DurationSeconds!.Value, 1e-12);
    }

    private static int ArgMax(double[] values, int start, int count)
    {
        int best = 0;
        for (int i = 1; i < count; i++)
        {
            if (values[start + i] > values[start + best])
            {
                best = i;
            }
        }
        return best;
    }
}
