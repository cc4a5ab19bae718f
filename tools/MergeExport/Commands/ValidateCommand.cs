using System.CommandLine;
using System.Globalization;
using OnnxLora.Core;
using OnnxLora.MergeExport.Internals;
using OnnxLora.Validate;

namespace OnnxLora.MergeExport.Commands;

/// <summary>
/// <c>validate</c>: runs the merged, unmerged and base ONNX models in ONNX Runtime on identical inputs,
/// compares outputs, measures latency (interleaved), applies the gates and writes the reports.
/// Exit code 0 when every gate passes, 1 when one fails, 2 for bad input.
/// </summary>
internal sealed class ValidateCommand : CliCommand
{
    private readonly Option<string[]> _merged = new("--merged")
    {
        Description = "The merged ONNX model (the candidate). Repeat it with --onnx-adapter, in pairs (--merged M1 --onnx-adapter A1 --merged M2 --onnx-adapter A2 ...), to validate several adapters on one --adapters-model.",
        Required = true,
    };
    private readonly Option<string?> _unmerged = new("--unmerged") { Description = "The ONNX model with LoRA branches as separate nodes." };
    private readonly Option<string?> _base = new("--base") { Description = "The base ONNX model without the adapter (for the merged/base latency ratio)." };
    private readonly Option<string?> _adaptersModel = new("--adapters-model") { Description = "An adapter-ready ONNX model (export --mode adapters): compared with --merged while --onnx-adapter is active on it." };
    private readonly Option<string[]> _onnxAdapter = new("--onnx-adapter")
    {
        Description = "The ONNX Runtime adapter file (.onnx_adapter) to activate on --adapters-model; one per --merged, in the same order (the k-th adapter is compared with the k-th merged model; all run in one session of --adapters-model).",
    };
    private readonly ValidationOptionSet _set = new();
    private readonly Option<string> _report = new("--report") { Description = "Folder for validation.json, validation.md and validation.html.", DefaultValueFactory = _ => "validation-report" };

    public ValidateCommand(CliContext context)
        : base("validate", "Compare merged and unmerged ONNX models in ONNX Runtime: outputs, latency, gates, reports.", context)
    {
        Options.Add(_merged);
        Options.Add(_unmerged);
        Options.Add(_base);
        Options.Add(_adaptersModel);
        Options.Add(_onnxAdapter);
        _set.AddTo(this);
        Options.Add(_report);
    }

    protected override int Execute(ParseResult parse)
    {
        string[] mergedModels = parse.GetValue(_merged) ?? [];
        string? unmerged = parse.GetValue(_unmerged);
        string? baseModel = parse.GetValue(_base);
        string? adaptersModel = parse.GetValue(_adaptersModel);
        string[] onnxAdapters = parse.GetValue(_onnxAdapter) ?? [];
        if (unmerged is null && adaptersModel is null)
        {
            throw OnnxLoraException.InvalidOption("--unmerged", "required (or --adapters-model with --onnx-adapter): the merged model needs a reference to be compared against.");
        }
        if ((adaptersModel is null) != (onnxAdapters.Length == 0))
        {
            throw OnnxLoraException.InvalidOption(adaptersModel is null ? "--adapters-model" : "--onnx-adapter",
                "--adapters-model and --onnx-adapter go together: the adapter file is activated on that model.");
        }
        if (mergedModels.Length > 1 && (onnxAdapters.Length != mergedModels.Length || unmerged is not null))
        {
            throw OnnxLoraException.InvalidOption("--merged", $"{mergedModels.Length} given with {onnxAdapters.Length} --onnx-adapter{(unmerged is null ? "" : " and --unmerged")}",
                "one --onnx-adapter per --merged, in pairs, and no --unmerged (it belongs to one merged model)");
        }
        if (onnxAdapters.Length > mergedModels.Length)
        {
            throw OnnxLoraException.InvalidOption("--onnx-adapter", $"{onnxAdapters.Length} given for {mergedModels.Length} --merged", "one --onnx-adapter per --merged");
        }
        foreach (string? path in mergedModels.Concat([unmerged, baseModel, adaptersModel]))
        {
            if (path is not null)
            {
                // Our own validation first (structure, external data confined to the model's folder), so bad
                // files get this project's message rather than ONNX Runtime's.
                _ = Core.Onnx.OnnxFile.Load(path, new Core.Onnx.OnnxLoadOptions { LoadExternalData = false });
            }
        }
        var options = _set.Read(parse);
        string reportDir = parse.GetValue(_report)!;
        if (mergedModels.Length == 1)
        {
            string merged = mergedModels[0];
            string? onnxAdapter = onnxAdapters.FirstOrDefault();
            string against = string.Join(" and ", new[] { unmerged, adaptersModel is null ? null : $"{adaptersModel} with {onnxAdapter} active" }.OfType<string>());
            Context.Info($"validating {merged} against {against}{(baseModel is null ? "" : $" (base {baseModel})")} ...");
            var request = new ValidationRequest(merged, unmerged) { BasePath = baseModel, AdapterModelPath = adaptersModel, ActiveAdapterPath = onnxAdapter };
            var report = Validator.Run(request, options, Context.CancellationToken);
            var paths = ReportWriter.WriteAll(report, reportDir, Context.Force);
            return ValidationOutput.Print(Context, "validate", report, paths, []);
        }

        // Several pairs: one session of the adapter-ready model, one report folder per pair, named by its adapter file.
        var names = onnxAdapters.Select(a => Path.GetFileNameWithoutExtension(a)).ToList();
        if (names.Distinct(StringComparer.Ordinal).Count() != names.Count)
        {
            throw OnnxLoraException.InvalidOption("--onnx-adapter", "two adapter files with the same name", "distinct file names (each names its pair's report folder under --report)");
        }
        Context.Info($"validating {mergedModels.Length} merged models against {adaptersModel} with their adapters active, in one session{(baseModel is null ? "" : $" (base {baseModel})")} ...");
        var requests = mergedModels.Select((m, k) => new ValidationRequest(m, null) { BasePath = baseModel, AdapterModelPath = adaptersModel, ActiveAdapterPath = onnxAdapters[k] }).ToList();
        var reports = Validator.RunAdapterPairs(requests, options, Context.CancellationToken);
        var pairs = reports.Select((r, k) => (Name: names[k], Report: r, Paths: ReportWriter.WriteAll(r, Path.Combine(reportDir, names[k]), Context.Force))).ToList();
        return ValidationOutput.PrintPairs(Context, "validate", pairs);
    }
}

/// <summary>The validation options shared by <c>validate</c> and <c>run</c>.</summary>
internal sealed class ValidationOptionSet
{
    public ChoiceOption<ExecutionDevice> Device { get; } = new("--device", "Where to run: auto (CUDA, else CPU), cuda or cpu.", ExecutionDevice.Auto,
        ("auto", ExecutionDevice.Auto), ("cuda", ExecutionDevice.Cuda), ("cpu", ExecutionDevice.Cpu));

    public Option<int> DeviceId { get; } = new Option<int>("--device-id") { Description = "CUDA device ordinal." }.AtLeast(0);

    public Option<bool> NoFallback { get; } = new("--no-cpu-fallback") { Description = "With --device cuda: fail instead of falling back to CPU." };

    public Option<int> Batch { get; } = new Option<int>("--batch") { Description = "Batch size of generated inputs.", DefaultValueFactory = _ => 1 }.AtLeast(1);

    public Option<int> Seq { get; } = new Option<int>("--seq") { Description = "Sequence length of generated inputs.", DefaultValueFactory = _ => 32 }.AtLeast(1);

    public ChoiceOption<PaddingSide> Padding { get; } = new("--padding", "Padding in generated attention masks: none, left or right.", PaddingSide.None,
        ("none", PaddingSide.None), ("left", PaddingSide.Left), ("right", PaddingSide.Right));

    public Option<string[]> Inputs { get; } = new("--inputs") { Description = "Input files instead of generated inputs (.json, or name=file.npy).", AllowMultipleArgumentsPerToken = true };

    public Option<int> Warmup { get; } = new Option<int>("--warmup") { Description = "Untimed runs per model before timing.", DefaultValueFactory = _ => 3 }.AtLeast(0);

    public Option<int> Runs { get; } = new Option<int>("--runs") { Description = "Timed interleaved rounds (0 skips latency).", DefaultValueFactory = _ => 50 }.AtLeast(0);

    public Option<double?> Duration { get; } = new Option<double?>("--duration") { Description = "Time the models for this many seconds instead of --runs." }.Finite(0.001);

    public Option<double> Atol { get; } = new Option<double>("--atol") { Description = "Absolute tolerance of the output comparison.", DefaultValueFactory = _ => 1e-4 }.Finite(0);

    public Option<double> Rtol { get; } = new Option<double>("--rtol") { Description = "Relative tolerance of the output comparison.", DefaultValueFactory = _ => 1e-3 }.Finite(0);

    public Option<double> MinTop1 { get; } = new Option<double>("--min-top1") { Description = "Least share of positions whose top-1 logit must agree (0..1).", DefaultValueFactory = _ => 1.0 }.Finite(0, 1);

    public Option<double?> MaxLatencyRatio { get; } = new Option<double?>("--max-latency-ratio") { Description = "Largest allowed median merged/base latency ratio (needs a base model)." }.Finite(0.001);

    public Option<int> Threads { get; } = new Option<int>("--threads") { Description = "Intra-op threads of every session (0: ONNX Runtime decides)." }.AtLeast(0);

    public ChoiceOption<GraphOptimization> GraphOptimization { get; } = new("--graph-optimization",
        "ONNX Runtime's graph_optimization_level of every session: all, extended, basic or none (ORT_DISABLE_ALL). With none and --no-cpu-mem-arena, fp16 weights are not folded into fp32 copies on CPU (see the README).",
        Validate.GraphOptimization.All,
        ("all", Validate.GraphOptimization.All), ("extended", Validate.GraphOptimization.Extended), ("basic", Validate.GraphOptimization.Basic), ("none", Validate.GraphOptimization.None));

    public Option<bool> NoCpuMemArena { get; } = new("--no-cpu-mem-arena") { Description = "Turn ONNX Runtime's CPU memory arena off (enable_cpu_mem_arena = false): released tensors go back to the system instead of staying reserved." };

    public Option<int> Seed { get; } = new("--seed") { Description = "Seed of generated inputs.", DefaultValueFactory = _ => 1234 };

    public Option<string?> Data { get; } = new("--data") { Description = "Task data (JSON Lines, pre-tokenized: {\"input_ids\": [...], \"label\": k} for classifiers, {\"input_ids\": [...]} for causal LMs): report accuracy or perplexity of merged, unmerged and base." };

    public Option<double?> MaxMetricDelta { get; } = new Option<double?>("--max-metric-delta") { Description = "With --data: fail (exit 1) when merged and unmerged differ by more than this in the task metric (accuracy as a fraction, or perplexity)." }.Finite(0);

    public Option<int> DecodeTokens { get; } = new Option<int>("--decode-tokens") { Description = "Generate this many tokens greedily through the key/value cache (with-past graphs: export --with-past or --genai): time to first token, per-token latency p50/p90/p99 and tokens/s of every model, and the merged model's tokens and per-step logits compared with each reference's (0: off, except that run decodes 16 with the generation model; else at least 2)." }.AtLeast(0);

    public Option<int> PromptTokens { get; } = new Option<int>("--prompt-tokens") { Description = "With --decode-tokens: prompt length (seeded token ids, --batch rows).", DefaultValueFactory = _ => 16 }.AtLeast(1);

    public Option<int> DecodeRuns { get; } = new Option<int>("--decode-runs") { Description = "With --decode-tokens: timed generations per model (interleaved rounds, after --warmup untimed ones).", DefaultValueFactory = _ => 5 }.AtLeast(1);

    public Option<string?> Baseline { get; } = new("--baseline") { Description = "validation.json of an earlier run on this machine: compare latency with it, model by model." };

    public PercentOption MaxRegression { get; } = new("--max-regression",
        "With --baseline: fail (exit 1) when the merged model is significantly slower than the baseline by more than this, e.g. 5% (the lower end of the 95% bootstrap interval of the median ratio must exceed it).");

    public Option<bool> AllowDifferentMachines { get; } = new("--allow-different-machines") { Description = "With --baseline: compare even when the baseline comes from another machine or other settings (the report lists the differences)." };

    public void AddTo(Command command)
    {
        foreach (Option o in new Option[]
        {
            Device, DeviceId, NoFallback, Batch, Seq, Padding, Inputs, Warmup, Runs, Duration, Atol, Rtol, MinTop1, MaxLatencyRatio, Threads, GraphOptimization, NoCpuMemArena, Seed,
            Data, MaxMetricDelta, DecodeTokens, PromptTokens, DecodeRuns, Baseline, MaxRegression, AllowDifferentMachines,
        })
        {
            command.Options.Add(o);
        }
    }

    public ValidationOptions Read(ParseResult parse) => ValidationOptions.Default with
    {
        Device = Device.Read(parse),
        DeviceId = parse.GetValue(DeviceId),
        AllowCpuFallback = !parse.GetValue(NoFallback),
        Batch = parse.GetValue(Batch),
        Sequence = parse.GetValue(Seq),
        Padding = Padding.Read(parse),
        InputFiles = parse.GetValue(Inputs) ?? [],
        Warmup = parse.GetValue(Warmup),
        Runs = parse.GetValue(Runs),
        Duration = parse.GetValue(Duration) is { } seconds ? TimeSpan.FromSeconds(seconds) : null,
        Atol = parse.GetValue(Atol),
        Rtol = parse.GetValue(Rtol),
        MinTop1 = parse.GetValue(MinTop1),
        MaxLatencyRatio = parse.GetValue(MaxLatencyRatio),
        IntraOpThreads = parse.GetValue(Threads),
        GraphOptimization = GraphOptimization.Read(parse),
        CpuMemArena = !parse.GetValue(NoCpuMemArena),
        Seed = parse.GetValue(Seed),
        BaselineReport = parse.GetValue(Baseline),
        MaxRegression = parse.GetValue(MaxRegression),
        AllowDifferentMachines = parse.GetValue(AllowDifferentMachines),
        DataFile = parse.GetValue(Data),
        MaxMetricDelta = parse.GetValue(MaxMetricDelta),
        DecodeTokens = parse.GetValue(DecodeTokens),
        PromptTokens = parse.GetValue(PromptTokens),
        DecodeRuns = parse.GetValue(DecodeRuns),
    };
}

/// <summary>Prints a validation outcome for people or as JSON and picks the exit code.</summary>
internal static class ValidationOutput
{
    /// <summary>
    /// Prints one validation, or with <paramref name="generation"/> also the validation of the generation model
    /// (<c>run</c>: the with-past graph that ships in genai-merged/), and returns 0 only when every gate of both passed.
    /// </summary>
    public static int Print(CliContext context, string command, ValidationReport report, ReportPaths paths, Dictionary<string, string> outputs,
        (ValidationReport Report, ReportPaths Paths)? generation = null)
    {
        bool passed = report.Status == ValidationStatus.Pass && generation?.Report.Status is null or ValidationStatus.Pass;
        outputs["reportJson"] = paths.Json;
        outputs["reportMarkdown"] = paths.Markdown;
        outputs["reportHtml"] = paths.Html;
        if (generation is { } g)
        {
            outputs["generationReportJson"] = g.Paths.Json;
            outputs["generationReportMarkdown"] = g.Paths.Markdown;
            outputs["generationReportHtml"] = g.Paths.Html;
        }
        if (context.Json)
        {
            var result = new CommandResult(command, passed ? "passed" : "gate-failed")
            {
                Outputs = outputs,
                FailedGates = [.. CommandResult.From(report), .. generation is { } gen ? CommandResult.From(gen.Report) : []],
                Details = Details(report, generation),
            };
            context.Out.WriteLine(result.ToJson());
        }
        else
        {
            PrintText(context, report);
            if (generation is { } gen)
            {
                context.Out.WriteLine($"generation model {gen.Report.Models[0].Path} (key/value cache) against {string.Join(" and ", gen.Report.Models.Skip(1).Select(m => Path.GetFileName(m.Path)))}:");
                PrintText(context, gen.Report);
            }
            context.Out.WriteLine($"{(passed ? "PASSED" : "GATE FAILED")}; report: {paths.Html}{(generation is { } h ? $", {h.Paths.Html}" : "")}");
        }
        return passed ? Cli.Success : Cli.GateFailed;
    }

    /// <summary>
    /// Several adapter pairs (<c>validate --merged M1 --onnx-adapter A1 --merged M2 …</c>): each pair's lines under its name; with
    /// <c>--json</c>, one object whose <c>details.pairs</c> holds each pair's details, report paths and status (passed only if all passed).
    /// </summary>
    public static int PrintPairs(CliContext context, string command, IReadOnlyList<(string Name, ValidationReport Report, ReportPaths Paths)> pairs)
    {
        bool passed = pairs.All(p => p.Report.Status == ValidationStatus.Pass);
        if (context.Json)
        {
            var outputs = new Dictionary<string, string>();
            foreach (var (name, _, paths) in pairs)
            {
                outputs[$"reportJson.{name}"] = paths.Json;
                outputs[$"reportMarkdown.{name}"] = paths.Markdown;
                outputs[$"reportHtml.{name}"] = paths.Html;
            }
            context.Out.WriteLine(new CommandResult(command, passed ? "passed" : "gate-failed")
            {
                Outputs = outputs,
                FailedGates = [.. pairs.SelectMany(p => CommandResult.From(p.Report))],
                Details =
                {
                    ["pairs"] = pairs.Select(p => new Dictionary<string, object?>(Details(p.Report))
                    {
                        ["name"] = p.Name,
                        ["merged"] = p.Report.Models.First(m => m.Role == ModelRole.Merged).Path,
                        ["activeAdapter"] = p.Report.Models.First(m => m.Role == ModelRole.Adapter).ActiveAdapter,
                        ["status"] = p.Report.Status == ValidationStatus.Pass ? "passed" : "gate-failed",
                    }).ToList(),
                },
            }.ToJson());
        }
        else
        {
            foreach (var (name, report, paths) in pairs)
            {
                context.Out.WriteLine($"== {name}: {report.Models.First(m => m.Role == ModelRole.Merged).Path} vs the adapters model with {report.Models.First(m => m.Role == ModelRole.Adapter).ActiveAdapter} active");
                PrintText(context, report);
                context.Out.WriteLine($"{name}: {(report.Status == ValidationStatus.Pass ? "PASSED" : "GATE FAILED")}; report: {paths.Html}");
            }
            context.Out.WriteLine($"{(passed ? "PASSED" : "GATE FAILED")}: {pairs.Count(p => p.Report.Status == ValidationStatus.Pass)} of {pairs.Count} pairs passed");
        }
        return passed ? Cli.Success : Cli.GateFailed;
    }

    private static Dictionary<string, object?> Details(ValidationReport report, (ValidationReport Report, ReportPaths Paths)? generation = null) => new()
    {
        ["provider"] = report.Provider.Used,
        ["fallbackReason"] = report.Provider.FallbackReason,
        ["latencyRatios"] = report.Latency?.Ratios.ToDictionary(r => r.Name, r => (object)new { median = r.Median, p10 = r.P10, p90 = r.P90, pairs = r.Pairs }),
        ["taskMetrics"] = report.TaskMetrics,
        ["decode"] = DecodeDetails(report.Decode),
        ["maxAbsError"] = MaxAbsErrors(report),
        ["generation"] = generation is { } shipped ? new
        {
            model = shipped.Report.Models[0].Path,
            status = shipped.Report.Passed ? "passed" : "gate-failed",
            maxAbsError = MaxAbsErrors(shipped.Report),
            decode = DecodeDetails(shipped.Report.Decode),
        } : null,
        ["baseline"] = report.Baseline?.Models.ToDictionary(m => m.Role.ToString().ToLowerInvariant(), m => (object)new
        {
            ratio = m.Ratio.Ratio,
            low = m.Ratio.Low,
            high = m.Ratio.High,
            relativeToBase = m.RelativeToBase?.Ratio,
            relativeToBaseLow = m.RelativeToBase?.Low,
            relativeToBaseHigh = m.RelativeToBase?.High,
            medianMs = m.Current.MedianMs,
            baselineMedianMs = m.Baseline.MedianMs,
            verdict = CompareCommand.VerdictWord(m.Verdict),
        }),
    };

    private static Dictionary<string, double> MaxAbsErrors(ValidationReport report) =>
        report.Comparisons.ToDictionary(c => c.Name, c => c.Outputs.Count == 0 ? 0 : c.Outputs.Max(o => o.MaxAbsError));

    private static object? DecodeDetails(DecodeReport? decode) => decode is null ? null : new
    {
        promptTokens = decode.PromptTokens,
        newTokens = decode.NewTokens,
        models = decode.Models.ToDictionary(m => m.Role.ToString().ToLowerInvariant(), m => (object)new
        {
            firstTokenMs = m.FirstToken.P50Ms,
            perTokenP50Ms = m.PerToken.P50Ms,
            perTokenP90Ms = m.PerToken.P90Ms,
            perTokenP99Ms = m.PerToken.P99Ms,
            tokensPerSecond = m.TokensPerSecond,
        }),
        tokensEqual = decode.Comparisons.ToDictionary(c => c.Name, c => c.MatchingTokens),
    };

    private static void PrintText(CliContext context, ValidationReport report)
    {
        var inv = CultureInfo.InvariantCulture;
        context.Out.WriteLine($"provider: {report.Provider.Used}");
        if (report.Provider.ShortFallbackReason() is { } why)
        {
            // ONNX Runtime's full text is long; it is in the reports, and on the console with --verbose.
            context.Out.WriteLine($"CUDA unavailable: {why}; using CPU");
            if (context.Verbose)
            {
                context.Out.WriteLine($"CUDA unavailable, ONNX Runtime said: {report.Provider.FallbackReason}");
            }
        }
        foreach (var c in report.Comparisons)
        {
            // The key/value cache outputs (present.{i}.key/.value) of a with-past graph: one line for all layers.
            var cache = c.Outputs.Where(o => o.Name.StartsWith("present.", StringComparison.Ordinal)).ToList();
            foreach (var o in c.Outputs.Except(cache))
            {
                string top1 = o.Top1Agreement is { } t ? $", top-1 agreement {t.ToString("P2", inv)}" : "";
                context.Out.WriteLine($"{c.Name,-22} {o.Name}: max abs {o.MaxAbsError.ToString("G3", inv)}, cosine {o.CosineSimilarity.ToString("F6", inv)}{top1}{(c.Gated ? "" : " (not gated)")}");
            }
            if (cache.Count > 0)
            {
                context.Out.WriteLine($"{c.Name,-22} present.* ({cache.Count} cache outputs): max abs {cache.Max(o => o.MaxAbsError).ToString("G3", inv)}, lowest cosine {cache.Min(o => o.CosineSimilarity).ToString("F6", inv)}{(c.Gated ? "" : " (not gated)")}");
            }
        }
        if (report.TaskMetrics is { } task)
        {
            string Value(double v) => task.Agreement.Count > 0 ? v.ToString("P2", inv) : v.ToString("G5", inv);
            context.Out.WriteLine($"{task.Metric} on {task.Examples} rows of {Path.GetFileName(task.DataFile)}: "
                + string.Join(", ", task.Models.Select(m => $"{m.Role.ToString().ToLowerInvariant()} {Value(m.Value)}"))
                + string.Concat(task.Agreement.Select(a => $"; {a.Role.ToString().ToLowerInvariant()} agrees with merged on {a.Value.ToString("P2", inv)}")));
        }
        if (report.Decode is { } dec)
        {
            foreach (var m in dec.Models)
            {
                context.Out.WriteLine($"decode {m.Role.ToString().ToLowerInvariant(),-9} first token {m.FirstToken.P50Ms.ToString("F3", inv)} ms (prompt {dec.PromptTokens}), per token p50 {m.PerToken.P50Ms.ToString("F3", inv)} / p90 {m.PerToken.P90Ms.ToString("F3", inv)} / p99 {m.PerToken.P99Ms.ToString("F3", inv)} ms, {m.TokensPerSecond.ToString("F1", inv)} tokens/s");
            }
            foreach (var c in dec.Comparisons)
            {
                context.Out.WriteLine($"{c.Name,-31} greedy tokens equal {c.MatchingTokens}/{dec.BatchSize * dec.NewTokens}, logits max abs {c.Logits.MaxAbsError.ToString("G3", inv)} over {c.ComparedSteps} steps{(c.Gated ? "" : " (not gated)")}");
            }
            foreach (var r in dec.Ratios)
            {
                context.Out.WriteLine($"decode {r.Name,-17} per token median {r.Median.ToString("F3", inv)} (p10 {r.P10.ToString("F3", inv)}, p90 {r.P90.ToString("F3", inv)}, {r.Pairs} interleaved rounds)");
            }
        }
        foreach (var r in report.Latency?.Ratios ?? [])
        {
            context.Out.WriteLine($"latency {r.Name,-18} median {r.Median.ToString("F3", inv)} (p10 {r.P10.ToString("F3", inv)}, p90 {r.P90.ToString("F3", inv)}, {r.Pairs} interleaved pairs)");
        }
        if (report.Baseline is { } baseline)
        {
            foreach (var d in baseline.Differences.Where(d => d.Kind != DifferenceKind.Software))
            {
                context.Out.WriteLine($"baseline differs in {d.Field}: {d.Found} (baseline {d.Baseline}); compared because --allow-different-machines was given");
            }
            foreach (var m in baseline.Models)
            {
                string level = (baseline.Confidence * 100).ToString("G3", inv) + "% CI";
                string relative = m.RelativeToBase is { } d
                    ? $", relative to base {d.Ratio.ToString("F3", inv)} ({level} {d.Low.ToString("F3", inv)}–{d.High.ToString("F3", inv)})"
                    : "";
                context.Out.WriteLine($"vs baseline {m.Role.ToString().ToLowerInvariant(),-9} median {m.Current.MedianMs.ToString("F3", inv)} ms vs {m.Baseline.MedianMs.ToString("F3", inv)} ms: "
                    + $"ratio {m.Ratio.Ratio.ToString("F3", inv)} ({level} {m.Ratio.Low.ToString("F3", inv)}–{m.Ratio.High.ToString("F3", inv)}){relative}, {CompareCommand.VerdictWord(m.Verdict)}");
            }
        }
        foreach (var f in report.Failures)
        {
            context.Error.WriteLine($"gate failed: {f.Message}");
        }
    }
}
