using System.Text.Json;
using OnnxLora.Core;

namespace OnnxLora.Validate.Tests;

/// <summary>
/// The JSON report of a hand-made report (no ONNX Runtime run, so every value is fixed) compared byte for byte with
/// Golden/validation-known.json, and its fields checked by type and value. The golden file pins what readers of
/// <c>onnxlora.validation/3</c> see: field order, nulls for absent and non-finite numbers, lower-case enums,
/// element type names, number and date formats, unescaped non-ASCII text.
/// Regenerate (only for an intended change of the schema, documented in docs/report-schema.md):
/// <c>ONNXLORA_REGENERATE_GOLDEN=1 dotnet test tests/Validate.Tests -c Release --filter Json_KnownReport_MatchesTheGoldenFile</c>.
/// </summary>
public sealed partial class ReportWriterTests
{
    private const string GoldenName = "validation-known.json";

    /// <summary>Every kind of value the writer handles: NaN/±Inf, nulls, each enum, each element type, big integers, non-ASCII text.</summary>
    internal static ValidationReport KnownReport()
    {
        var options = ValidationOptions.Default with
        {
            Device = ExecutionDevice.Cuda,
            DeviceId = 1,
            AllowCpuFallback = true,
            Batch = 2,
            Sequence = 6,
            Dims = new Dictionary<string, long> { ["z_dim"] = 7, ["past_sequence_length"] = 0 },
            Padding = PaddingSide.Left,
            PadTokenId = -1,
            Seed = 42,
            VocabSize = null,
            InputFiles = ["ids=input_ids.npy", "dir/ü.json"],
            Warmup = 2,
            Runs = 3,
            Duration = TimeSpan.FromMilliseconds(1500),
            Atol = 1e-4,
            Rtol = 0.001,
            MinTop1 = 0.99,
            MaxLatencyRatio = 1.25,
            BaselineReport = "/runs/previous/validation.json",
            MaxRegression = 0.05,
            AllowDifferentMachines = true,
            IntraOpThreads = 4,
            InterOpThreads = 0,
            GraphOptimization = GraphOptimization.Extended,
            LogitsOutput = "logits",
            DecodeTokens = 3,
            PromptTokens = 3,
            DecodeRuns = 2,
        };
        string[] dims = ["batch", "sequence", "48"];
        var signatureIn = new TensorSignature("input_ids", DType.I64, ["batch", "?"]);
        var signatureOut = new TensorSignature("logits", DType.F16, dims);
        return new ValidationReport
        {
            Status = ValidationStatus.GateFailed,
            CreatedUtc = new DateTimeOffset(2026, 11, 29, 10, 21, 42, TimeSpan.FromHours(1)).AddTicks(7_757_057),
            ToolVersion = "1.2.3+abc",
            OnnxRuntimeVersion = "1.31.0",
            Machine = new MachineReport("Linux 6.8.0-45-generic #45-Ubuntu SMP", "X64", "AMD EPYC 7763 64-Core Processor", 16, 135_000_000_000,
                new GpuReport(1, "NVIDIA H200", "570.86.15")),
            Options = options,
            Provider = new ProviderReport(ExecutionDevice.Cuda, 1, true, "CPUExecutionProvider",
                "CUDA failed | Failed to load library libonnxruntime_providers_cuda.so with error: libcublasLt.so.13: cannot open shared object file \"x\"\\y",
                new SessionSettings(4, 0, GraphOptimization.Extended, "sequential"))
            {
                Options = [new ProviderOption("device_id", "1")],
            },
            Inputs = new InputsReport(true, 48, "last dimension of output logits",
            [
                new InputSummary("attention_mask", DType.Bool, [2, 6], "generated: ones"),
                new InputSummary("input_ids", DType.I64, [2, 6], "generated: uniform in [0, 48) <seed 42> & more"),
                new InputSummary("pixel", DType.BF16, [1], "npy: a.npy"),
            ]),
            Models =
            [
                new ModelReport(ModelRole.Merged, "/m/merged.onnx", 3_000_000_000, 5_000_000_000L, ["w.bin", "ü.bin"], 12.5, null,
                    [signatureIn], [signatureOut]) { ContentSha256 = new string('a', 64) },
                new ModelReport(ModelRole.Unmerged, "/m/unmerged.onnx", 10, 0, [], double.NaN, -4096,
                    [signatureIn with { ElementType = DType.I32 }], [signatureOut with { ElementType = DType.F64 }]) { ContentSha256 = new string('b', 64) },
                new ModelReport(ModelRole.Base, "/m/base.onnx", 9, 0, [], 0.1 + 0.2, 9_007_199_254_740_993,
                    [signatureIn], [signatureOut with { ElementType = DType.F32 }]) { ContentSha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
            ],
            Comparisons =
            [
                new ComparisonReport(ModelRole.Merged, ModelRole.Unmerged, true,
                [
                    new OutputComparison
                    {
                        Name = "logits", Shape = [2, 6, 48], ActualType = DType.F16, ReferenceType = DType.F64,
                        Elements = 576, MaxAbsError = 1.83, MaxRelError = double.PositiveInfinity, RmsError = double.NaN,
                        CosineSimilarity = -0.0, ReferenceMaxAbs = 1e-20, BeyondTolerance = 1203, NonFiniteActual = 0, NonFiniteReference = 2,
                        WorstIndex = [1, 4, 17], WorstActual = 3.66, WorstReference = double.NegativeInfinity,
                        Top1Agreement = 0.5, Top1Positions = 12,
                    },
                ]),
                new ComparisonReport(ModelRole.Merged, ModelRole.Base, false,
                [
                    new OutputComparison
                    {
                        Name = "hidden", Shape = [], ActualType = DType.F16, ReferenceType = DType.F32,
                        Elements = 1, MaxAbsError = 0, MaxRelError = 0, RmsError = 0, CosineSimilarity = 1, ReferenceMaxAbs = 123456789012.5,
                        BeyondTolerance = 0, NonFiniteActual = 0, NonFiniteReference = 0,
                    },
                ]),
                new ComparisonReport(ModelRole.Merged, ModelRole.Eager, true, []),
            ],
            Latency = new LatencyReport("duration", 2, 3, 1.5, 2, 12, "IOBinding: outputs on the CPU",
            [
                new ModelLatency(ModelRole.Merged, new LatencyStats(3, 1.5, 0.25, 1, 1.5, 1.9, 1.95, 1.99, 2), 1333.3333333333333, 8000, [1, double.NaN, 2]),
                new ModelLatency(ModelRole.Base, new LatencyStats(3, double.PositiveInfinity, double.NaN, 1, 1, 1, 1, 1, 1), 0, 0, [1, 1, double.PositiveInfinity]),
            ],
            [
                new LatencyRatio("merged/base", ModelRole.Merged, ModelRole.Base, 3, 1.5, double.NaN, 1.1, 1.9, 1.2, 1.8),
            ])
            {
                RunsPerSample = 7,
            },
            Baseline = new BaselineComparison("/runs/previous/validation.json", new DateTimeOffset(2026, 11, 28, 23, 0, 0, TimeSpan.Zero), 0.05, 0.95, 2000, 1,
            [
                new SettingDifference("this run", "machine.cpuModel", DifferenceKind.Machine, "Intel Xeon", "AMD EPYC 7763 64-Core Processor"),
                new SettingDifference("this run", "onnxRuntimeVersion", DifferenceKind.Software, "1.30.0", "1.31.0"),
            ],
            [
                new BaselineLatency(ModelRole.Merged, false, new MedianEstimate(40, 1.25, 1.2, 1.3), new MedianEstimate(3, 1.5, 1, 2),
                    new RatioEstimate(1.2, 1.1, double.PositiveInfinity), new RatioEstimate(1.15, 1.07, 1.2), LatencyVerdict.Regression),
                new BaselineLatency(ModelRole.Base, true, new MedianEstimate(40, 1, 0.9, 1.1), new MedianEstimate(3, 1, 1, 1),
                    new RatioEstimate(1, 0.9, 1.1), null, LatencyVerdict.NoSignificantChange),
            ]),
            Decode = new DecodeReport(3, [5, 7, 9, 11, 13, 15], 3, 2, 1, 2, "one ONNX Runtime session per model",
            [
                new ModelDecode(ModelRole.Merged, new LatencyStats(2, 4, 0.5, 3.5, 4, 4.4, 4.45, 4.49, 4.5), new LatencyStats(4, 1.25, 0.1, 1.1, 1.2, 1.3, 1.35, 1.39, 1.4),
                    3200, [3.5, 4.5], [1.1, 1.2, 1.3, 1.4], [1, 2, 3, 4, 5, 6]),
                new ModelDecode(ModelRole.Unmerged, new LatencyStats(2, 5, 0, 5, 5, 5, 5, 5, 5), new LatencyStats(4, double.NaN, 0, 1, 1, 1, 1, 1, 1),
                    double.PositiveInfinity, [5, 5], [1, 1, 1, 1], [1, 2, 3, 4, 5, 7]),
            ],
            [
                new LatencyRatio("unmerged/merged", ModelRole.Unmerged, ModelRole.Merged, 2, 0.85, 0.85, 0.8, 0.9, 0.82, 0.88),
            ],
            [
                new DecodeComparison(ModelRole.Unmerged, true, 5, 2, 3, new OutputComparison
                {
                    Name = "logits", Shape = [3, 2, 48], ActualType = DType.F32, ReferenceType = DType.F16,
                    Elements = 288, MaxAbsError = 0.5, MaxRelError = 0.25, RmsError = 0.01, CosineSimilarity = 0.999, ReferenceMaxAbs = 9,
                    BeyondTolerance = 7, NonFiniteActual = 0, NonFiniteReference = 0, WorstIndex = [2, 1, 30], WorstActual = 1.5, WorstReference = 1,
                    Top1Agreement = 5.0 / 6, Top1Positions = 6,
                }),
            ]),
            PeakMemoryBytes = 123_456_789,
            TaskMetrics = new TaskMetricsReport("/data/task.jsonl", "text-classification", "accuracy", 40,
                [new(ModelRole.Merged, 0.95), new(ModelRole.Unmerged, 0.95), new(ModelRole.Base, 0.5)],
                [new(ModelRole.Unmerged, 1.0), new(ModelRole.Base, 0.525)]),
            Gates =
            [
                new GateReport("finite", true, false, "no NaN/Inf", "2 non-finite"),
                new GateReport("tolerance", true, false, "|merged − ref| ≤ 1e-4 + 1e-3·|ref|", "1203 beyond"),
                new GateReport("min-top1", true, false, "≥ 99%", "50%"),
                new GateReport("max-latency-ratio", true, false, "≤ 1.25", "1.5"),
                new GateReport("max-regression", true, false, "lower end of the 95% CI of merged/baseline median latency ≤ 1.05", "ratio 1.2 (95% CI 1.1–∞)"),
            ],
            Failures =
            [
                new GateFailure("tolerance", "merged vs unmerged", "logits", 1.83, 1e-4, "merged vs unmerged: output logits: 1203 of 576 elements beyond atol 0.0001 + rtol 0.001·|ref|"),
                new GateFailure("max-latency-ratio", null, null, double.NaN, null, "median merged/base ratio NaN > 1.25 <b>"),
                new GateFailure("max-regression", null, null, 1.07, 1.05, "merged latency vs baseline: ratio 1.2, relative to the base model 1.15"),
            ],
            Warnings = ["Cuda was requested but CPU ran: CUDA failed", "tab\there, emoji 🙂, control \u0001"],
        };
    }

    [TestMethod]
    public void Json_KnownReport_MatchesTheGoldenFile()
    {
        string path = Path.Combine(RepoRoot(), "tests", "Validate.Tests", "Golden", GoldenName);
        string json = ReportWriter.ToJson(KnownReport());
        if (Environment.GetEnvironmentVariable("ONNXLORA_REGENERATE_GOLDEN") == "1")
        {
            File.WriteAllText(path, json);
        }

        string golden = File.ReadAllText(path);

        if (golden != json)
        {
            string[] want = golden.Split('\n'), got = json.Split('\n');
            int line = Enumerable.Range(0, Math.Min(want.Length, got.Length)).FirstOrDefault(i => want[i] != got[i], Math.Min(want.Length, got.Length));
            Assert.Fail($"the JSON report differs from {path} at line {line + 1}: expected '{want.ElementAtOrDefault(line)}', written '{got.ElementAtOrDefault(line)}' "
                + "(see the class summary to regenerate after documenting an intended change)");
        }
    }

    [TestMethod]
    public void Json_KnownReport_HasTheDocumentedTypesAndValues()
    {
        string json = ReportWriter.ToJson(KnownReport());
        using var doc = JsonDocument.Parse(json);
        var root = doc.RootElement;

        StringAssert.Contains(json, "\"|merged − ref| ≤ 1e-4 + 1e-3·|ref|\"", "non-ASCII text and + are not escaped");
        StringAssert.EndsWith(json, "}\n");

        Assert.AreEqual("onnxlora.validation/3", root.GetProperty("schema").GetString());
        Assert.AreEqual("gateFailed", root.GetProperty("status").GetString());
        Assert.AreEqual("2026-11-29T09:21:42.7757057Z", root.GetProperty("createdUtc").GetString());
        Assert.AreEqual(123_456_789L, root.GetProperty("peakMemoryBytes").GetInt64());

        var o = root.GetProperty("options");
        Assert.AreEqual("cuda", o.GetProperty("device").GetString());
        Assert.AreEqual("left", o.GetProperty("padding").GetString());
        Assert.AreEqual("extended", o.GetProperty("graphOptimization").GetString());
        Assert.AreEqual(JsonValueKind.True, o.GetProperty("allowCpuFallback").ValueKind);
        Assert.AreEqual(-1L, o.GetProperty("padTokenId").GetInt64());
        Assert.AreEqual(JsonValueKind.Null, o.GetProperty("vocabSize").ValueKind);
        Assert.AreEqual(1.5, o.GetProperty("durationSeconds").GetDouble());
        Assert.AreEqual(1e-4, o.GetProperty("atol").GetDouble());
        CollectionAssert.AreEqual(new[] { "past_sequence_length", "z_dim" },
            o.GetProperty("dims").EnumerateArray().Select(d => d.GetProperty("name").GetString()).ToArray(), "dims sorted by name");
        Assert.AreEqual(7L, o.GetProperty("dims")[1].GetProperty("value").GetInt64());
        CollectionAssert.AreEqual(new[] { "ids=input_ids.npy", "dir/ü.json" },
            o.GetProperty("inputFiles").EnumerateArray().Select(s => s.GetString()).ToArray());

        var p = root.GetProperty("provider");
        Assert.AreEqual("cuda", p.GetProperty("requested").GetString());
        StringAssert.EndsWith(p.GetProperty("fallbackReason").GetString(), "\"x\"\\y");
        Assert.AreEqual("extended", p.GetProperty("session").GetProperty("graphOptimization").GetString());
        Assert.IsTrue(p.GetProperty("session").GetProperty("cpuMemArena").GetBoolean());

        var tensors = root.GetProperty("inputs").GetProperty("tensors");
        CollectionAssert.AreEqual(new[] { "bool", "int64", "bfloat16" },
            tensors.EnumerateArray().Select(t => t.GetProperty("elementType").GetString()).ToArray());
        Assert.AreEqual(48L, root.GetProperty("inputs").GetProperty("vocabSize").GetInt64());

        var models = root.GetProperty("models");
        CollectionAssert.AreEqual(new[] { "merged", "unmerged", "base" }, models.EnumerateArray().Select(m => m.GetProperty("role").GetString()).ToArray());
        Assert.AreEqual(8_000_000_000L, models[0].GetProperty("totalBytes").GetInt64());
        Assert.AreEqual(JsonValueKind.Null, models[0].GetProperty("rssDeltaBytes").ValueKind);
        Assert.AreEqual(JsonValueKind.Null, models[1].GetProperty("sessionCreateMs").ValueKind, "NaN is written as null");
        Assert.AreEqual(9_007_199_254_740_993L, models[2].GetProperty("rssDeltaBytes").GetInt64(), "integers are exact beyond 2^53");
        Assert.AreEqual("float64", models[1].GetProperty("outputs")[0].GetProperty("elementType").GetString());
        CollectionAssert.AreEqual(new[] { "batch", "?" }, models[0].GetProperty("inputs")[0].GetProperty("dims").EnumerateArray().Select(d => d.GetString()).ToArray());

        var c = root.GetProperty("comparisons");
        CollectionAssert.AreEqual(new[] { "merged vs unmerged", "merged vs base", "merged vs eager" },
            c.EnumerateArray().Select(x => x.GetProperty("name").GetString()).ToArray());
        Assert.AreEqual("eager", c[2].GetProperty("reference").GetString());
        Assert.AreEqual(JsonValueKind.False, c[1].GetProperty("gated").ValueKind);
        var first = c[0].GetProperty("outputs")[0];
        Assert.AreEqual("float16", first.GetProperty("actualType").GetString());
        Assert.AreEqual(JsonValueKind.Null, first.GetProperty("maxRelError").ValueKind, "+Inf is written as null");
        Assert.AreEqual(JsonValueKind.Null, first.GetProperty("worstReference").ValueKind, "-Inf is written as null");
        Assert.IsTrue(double.IsNegative(first.GetProperty("cosineSimilarity").GetDouble()), "-0 keeps its sign");
        Assert.AreEqual(1e-20, first.GetProperty("referenceMaxAbs").GetDouble());
        CollectionAssert.AreEqual(new long[] { 1, 4, 17 }, first.GetProperty("worstIndex").EnumerateArray().Select(i => i.GetInt64()).ToArray());
        var second = c[1].GetProperty("outputs")[0];
        Assert.AreEqual(JsonValueKind.Null, second.GetProperty("worstIndex").ValueKind);
        Assert.AreEqual(JsonValueKind.Null, second.GetProperty("top1Agreement").ValueKind);
        Assert.AreEqual(0, second.GetProperty("shape").GetArrayLength());
        Assert.AreEqual(0, c[2].GetProperty("outputs").GetArrayLength());

        var latency = root.GetProperty("latency");
        Assert.AreEqual("duration", latency.GetProperty("mode").GetString());
        var merged = latency.GetProperty("models")[0];
        Assert.AreEqual(3, merged.GetProperty("count").GetInt32());
        Assert.AreEqual(1.99, merged.GetProperty("p99Ms").GetDouble());
        CollectionAssert.AreEqual(new[] { JsonValueKind.Number, JsonValueKind.Null, JsonValueKind.Number },
            merged.GetProperty("samplesMs").EnumerateArray().Select(s => s.ValueKind).ToArray());
        Assert.AreEqual(JsonValueKind.Null, latency.GetProperty("models")[1].GetProperty("meanMs").ValueKind);
        var ratio = latency.GetProperty("ratios")[0];
        Assert.AreEqual("base", ratio.GetProperty("denominator").GetString());
        Assert.AreEqual(JsonValueKind.Null, ratio.GetProperty("mean").ValueKind);

        Assert.AreEqual("|merged − ref| ≤ 1e-4 + 1e-3·|ref|", root.GetProperty("gates")[1].GetProperty("limit").GetString());
        var failure = root.GetProperty("failures")[1];
        Assert.AreEqual(JsonValueKind.Null, failure.GetProperty("comparison").ValueKind);
        Assert.AreEqual(JsonValueKind.Null, failure.GetProperty("value").ValueKind);
        Assert.AreEqual(JsonValueKind.Null, failure.GetProperty("limit").ValueKind);
        Assert.AreEqual("tab\there, emoji 🙂, control \u0001", root.GetProperty("warnings")[1].GetString());
    }

    [TestMethod]
    public void Json_WithoutLatency_WritesNull()
    {
        using var doc = JsonDocument.Parse(ReportWriter.ToJson(KnownReport() with { Latency = null, PeakMemoryBytes = null }));

        Assert.AreEqual(JsonValueKind.Null, doc.RootElement.GetProperty("latency").ValueKind);
        Assert.AreEqual(JsonValueKind.Null, doc.RootElement.GetProperty("peakMemoryBytes").ValueKind);
    }
}
