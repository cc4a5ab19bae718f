using System.Globalization;
using System.Reflection;
using Microsoft.ML.OnnxRuntime;
using OnnxLora.Core;
using OnnxLora.Core.Onnx;
using OnnxLora.Validate.Internals;

namespace OnnxLora.Validate;

/// <summary>
/// The proof step before shipping a merged model: runs the merged, unmerged and base ONNX models in ONNX Runtime on
/// identical inputs with identical session options, compares the merged model's outputs with the unmerged model's
/// and the eager reference's (gated) and the base model's (reported), times them in interleaved rounds, and applies
/// the gates of <see cref="ValidationOptions"/>.
/// </summary>
public static partial class Validator
{
    /// <summary>Runs the validation.</summary>
    /// <returns>The report; <see cref="ValidationReport.Status"/> says whether every gate passed.</returns>
    /// <exception cref="OnnxLoraException">Bad input: bad options or request (including input files that miss a declared input); a
    /// model or input file that does not exist; a model ONNX Runtime cannot load, models that disagree on inputs or outputs,
    /// malformed input files; or CUDA was required (fallback disabled) and could not be used.</exception>
    public static ValidationReport Run(ValidationRequest request, ValidationOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        options ??= ValidationOptions.Default;
        CheckOptions(request, options);
        using var factory = new SessionFactory(options);
        return Run(request, options, factory, sharedReferences: false, cancellationToken);
    }

    /// <summary>
    /// Validates several merged models, each against the one adapter-ready model with its own adapter active
    /// (<see cref="ValidationRequest.AdapterModelPath"/> and <see cref="ValidationRequest.ActiveAdapterPath"/>), in ONE ONNX
    /// Runtime session of that model: every pair runs it with its adapter in its own run options, switching adapters
    /// between runs without reloading; the base model, when given, is one session too. Each pair is gated and reported
    /// as <see cref="Run(ValidationRequest, ValidationOptions?, CancellationToken)"/> does, one after the other.
    /// </summary>
    /// <param name="requests">One request per pair; all name the same adapter-ready model and the same base model (or none).</param>
    /// <param name="options">The options every pair runs with.</param>
    /// <param name="cancellationToken">Cancels between runs.</param>
    /// <returns>One report per request, in order.</returns>
    /// <exception cref="OnnxLoraException">Bad input: no requests, requests that differ in adapter-ready or base model, or a request
    /// without an active adapter; or as <see cref="Run(ValidationRequest, ValidationOptions?, CancellationToken)"/>.</exception>
    public static IReadOnlyList<ValidationReport> RunAdapterPairs(IReadOnlyList<ValidationRequest> requests, ValidationOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(requests);
        options ??= ValidationOptions.Default;
        if (requests.Count == 0)
        {
            throw ValidateThrow.Option("requests", "none", "at least one merged model and adapter pair");
        }
        string? Full(string? path) => path is null ? null : Path.GetFullPath(path);
        foreach (var r in requests)
        {
            CheckOptions(r, options);
            if (r.AdapterModelPath is null || Full(r.AdapterModelPath) != Full(requests[0].AdapterModelPath) || Full(r.BasePath) != Full(requests[0].BasePath))
            {
                throw ValidateThrow.Option("AdapterModelPath/BasePath", $"{r.AdapterModelPath ?? "none"} and base {r.BasePath ?? "none"} for {r.MergedPath}",
                    $"the one adapter-ready model ({requests[0].AdapterModelPath ?? "none"}) and base ({requests[0].BasePath ?? "none"}) of every pair");
            }
        }
        using var factory = new SessionFactory(options);
        return [.. requests.Select(r => Run(r, options, factory, sharedReferences: true, cancellationToken))];
    }

    /// <summary>One validation with sessions from <paramref name="factory"/>; with <paramref name="sharedReferences"/>, the adapter-ready and base models' sessions are the factory's shared ones.</summary>
    private static ValidationReport Run(ValidationRequest request, ValidationOptions options, SessionFactory factory, bool sharedReferences, CancellationToken cancellationToken)
    {
        var baseline = LoadBaseline(options);

        var models = new List<(ModelRole Role, string Path)> { (ModelRole.Merged, request.MergedPath) };
        if (request.UnmergedPath is not null)
        {
            models.Add((ModelRole.Unmerged, request.UnmergedPath));
        }
        if (request.AdapterModelPath is not null)
        {
            models.Add((ModelRole.Adapter, request.AdapterModelPath));
        }
        if (request.BasePath is not null)
        {
            models.Add((ModelRole.Base, request.BasePath));
        }
        for (int i = 0; i < models.Count; i++)
        {
            string full = Path.GetFullPath(models[i].Path);
            if (!File.Exists(full))
            {
                throw ValidateThrow.ModelNotFound(models[i].Role.ToString().ToLowerInvariant(), full);
            }
            models[i] = (models[i].Role, full);
        }

        var scans = new Dictionary<string, OnnxFileScan>(StringComparer.Ordinal);
        OnnxFileScan Scan(string path)
        {
            if (!scans.TryGetValue(path, out var scan))
            {
                scan = OnnxFileScan.Read(path);
                scans[path] = scan;
            }
            return scan;
        }
        foreach (var (_, path) in models)
        {
            CheckExternalData(path, Scan);
        }

        var warnings = new List<string>();
        var sessions = new List<ModelSession>();
        try
        {
            string? adapterFile = request.ActiveAdapterPath is null ? null : CheckAdapterFile(request.ActiveAdapterPath, models.First(m => m.Role == ModelRole.Adapter).Path);
            foreach (var (role, path) in models)
            {
                cancellationToken.ThrowIfCancellationRequested();
                bool shared = sharedReferences && role is ModelRole.Adapter or ModelRole.Base;
                sessions.Add(ModelSession.Load(role, path, factory, role == ModelRole.Adapter ? adapterFile : null, shared));
            }
            if (factory.FallbackReason is not null)
            {
                warnings.Add($"{options.Device} was requested but CPU ran: {factory.FallbackReason}");
            }
            var merged = sessions[0];
            if (options.DecodeTokens > 0)
            {
                foreach (var s in sessions)
                {
                    DecodeBench.Check(s, options);
                }
            }

            var declared = InputBuilder.Declared(sessions.Select(s => (s.Path, s.Inputs)));
            long? vocab = null;
            string? vocabSource = null;
            long ResolveVocab()
            {
                if (vocab is long known)
                {
                    return known;
                }
                (vocab, vocabSource) = StaticVocab(merged, options);
                if (vocab is null)
                {
                    long? rows = Scan(merged.Path).EmbeddingRows(InputBuilder.InputIds);
                    if (rows is not null)
                    {
                        (vocab, vocabSource) = (rows, "rows of the embedding initializer that input_ids indexes");
                    }
                }
                return vocab ?? throw ValidateThrow.Option("VocabSize", $"no vocabulary size in {merged.Path} (output {options.LogitsOutput} has no fixed last dimension and no embedding initializer is indexed by input_ids)",
                    "a value (--vocab-size N)");
            }

            bool generated = options.InputFiles.Count == 0;
            List<InputTensor> inputs;
            if (generated)
            {
                inputs = InputBuilder.Generate(declared, options, ResolveVocab);
            }
            else
            {
                (vocab, vocabSource) = StaticVocab(merged, options);
                inputs = InputBuilder.ReadFiles(declared, options.InputFiles, vocab);
            }

            using var inputSet = new InputSet(inputs);
            var outputs = new Dictionary<ModelRole, IReadOnlyDictionary<string, HostTensor>>();
            foreach (var s in sessions)
            {
                cancellationToken.ThrowIfCancellationRequested();
                outputs[s.Role] = s.RunForOutputs(inputSet);
            }

            var comparisons = new List<ComparisonReport>();
            foreach (var s in sessions.Skip(1))
            {
                comparisons.Add(CompareModels(merged, s, outputs[ModelRole.Merged], outputs[s.Role], options, s.Role != ModelRole.Base));
            }
            if (request.EagerReference is not null)
            {
                var eager = request.EagerReference(inputSet.ByName());
                comparisons.Add(CompareEager(outputs[ModelRole.Merged], eager, options));
            }
            var baseComparison = comparisons.FirstOrDefault(c => c.Reference == ModelRole.Base);
            if (baseComparison is not null && baseComparison.Outputs.All(o => o.MaxAbsError == 0 && o.NonFiniteActual + o.NonFiniteReference == 0))
            {
                warnings.Add("merged and base outputs are identical: the adapter has no visible effect on these inputs.");
            }

            var taskMetrics = options.DataFile is null ? null : TaskMetricRunner.Evaluate(sessions, options.DataFile, options.LogitsOutput, cancellationToken);

            LatencyReport? latency = null;
            if (options.Runs > 0 || options.Duration is not null)
            {
                foreach (var s in sessions)
                {
                    s.Bind(inputSet, outputs[s.Role], factory.UsesCuda, options.DeviceId);
                }
                var (batch, tokens) = Throughput(inputs, options);
                string binding = "IOBinding: inputs are the same CPU OrtValues for every model"
                    + (factory.UsesCuda ? $" (copied to the GPU by ONNX Runtime each run); outputs pre-allocated on CUDA device {options.DeviceId}" : "; outputs pre-allocated on the CPU");
                latency = LatencyBench.Measure(sessions, options, batch, tokens, binding, cancellationToken);
            }

            var decode = options.DecodeTokens > 0 ? DecodeBench.Measure(sessions, options, ResolveVocab(), factory.UsesCuda, cancellationToken) : null;

            var modelReports = sessions.Select(s => DescribeModel(s, Scan(s.Path), warnings)).ToList();
            var inputsReport = new InputsReport(generated, vocab, vocabSource,
                [.. inputs.Select(t => new InputSummary(t.Name, t.ElementType, t.Shape, t.Source))]);
            var report = new ValidationReport
            {
                Status = ValidationStatus.Pass,
                CreatedUtc = DateTimeOffset.UtcNow,
                ToolVersion = ToolVersion(),
                OnnxRuntimeVersion = OrtEnv.Instance().GetVersionString(),
                Machine = MachineInfo.Current(factory.UsesCuda ? options.DeviceId : null),
                Options = options,
                Provider = new ProviderReport(options.Device, options.DeviceId, options.AllowCpuFallback, factory.Provider!, factory.FallbackReason, factory.Settings)
                {
                    Options = factory.ProviderOptions,
                },
                Inputs = inputsReport,
                Models = modelReports,
                Comparisons = comparisons,
                Latency = latency,
                Decode = decode,
                PeakMemoryBytes = ProcessMemory.PeakResidentBytes(),
                TaskMetrics = taskMetrics,
                Gates = [],
                Failures = [],
                Warnings = warnings,
            };
            var baselineComparison = baseline is null ? null : CompareWithBaseline(baseline, report, options);
            var (gates, failures) = Gates(comparisons, decode, latency, baselineComparison, taskMetrics, options);
            return report with
            {
                Status = failures.Count == 0 ? ValidationStatus.Pass : ValidationStatus.GateFailed,
                Baseline = baselineComparison,
                Gates = gates,
                Failures = failures,
            };
        }
        finally
        {
            foreach (var s in sessions)
            {
                s.Dispose();
            }
        }
    }

    /// <summary>
    /// OnnxLora's own external-data checks (Core's <see cref="OnnxFile.Load"/>: location confined to the model's folder,
    /// symbolic links followed; offset and length inside the data file) before ONNX Runtime opens anything the model
    /// names, for every caller of this library. Only a model whose scan finds external_data entries is parsed for it
    /// (its protobuf is small); a file the scan cannot read is left to ONNX Runtime, which reports it when loading.
    /// </summary>
    private static void CheckExternalData(string path, Func<string, OnnxFileScan> scan)
    {
        bool external;
        try
        {
            external = scan(path).HasExternalData;
        }
        catch (OnnxLoraException e) when (e.Kind == ErrorKind.BadInput)
        {
            return;
        }
        if (external)
        {
            _ = OnnxFile.Load(path, new OnnxLoadOptions { LoadExternalData = false, ValidateGraph = false });
        }
    }

    /// <summary>
    /// Reads and verifies the adapter file and checks that each parameter fits an input of the adapter-ready graph
    /// (Core's <see cref="OnnxAdapterFile"/>), so a mismatch is one line naming both files, not an ONNX Runtime run failure.
    /// </summary>
    private static string CheckAdapterFile(string adapterPath, string modelPath)
    {
        string full = Path.GetFullPath(adapterPath);
        var adapter = OnnxAdapterFile.Read(full);
        var graph = OnnxFile.Load(modelPath, new OnnxLoadOptions { LoadExternalData = false, ValidateGraph = false }).Graph;
        OnnxAdapterFile.CheckFits(adapter, full, graph, modelPath);
        if (adapter.Parameters.Count == 0)
        {
            throw OnnxLoraException.Invalid(full, "parameters", "none", "at least one LoRA factor (an empty adapter validates nothing)");
        }
        return full;
    }

    private static void CheckOptions(ValidationRequest request, ValidationOptions o)
    {
        if ((request.AdapterModelPath is null) != (request.ActiveAdapterPath is null))
        {
            throw ValidateThrow.Option(request.AdapterModelPath is null ? "AdapterModelPath" : "ActiveAdapterPath", "missing",
                "both the adapter-ready model and the .onnx_adapter file to activate on it");
        }
        if (string.IsNullOrWhiteSpace(request.MergedPath))
        {
            throw ValidateThrow.Option("MergedPath", "an empty path", "the merged .onnx file");
        }
        if (request.UnmergedPath is null && request.EagerReference is null && request.AdapterModelPath is null)
        {
            throw ValidateThrow.Option("UnmergedPath/EagerReference/AdapterModelPath", "none",
                "an unmerged model, an eager reference or an adapter-ready model with an active adapter to compare the merged model with");
        }
        static string F(double v) => v.ToString("R", CultureInfo.InvariantCulture);
        if (o.MaxMetricDelta is double delta && (!(delta >= 0) || o.DataFile is null || request.UnmergedPath is null))
        {
            throw ValidateThrow.Option("MaxMetricDelta", F(delta), "a non-negative number, with a data file (--data) and an unmerged model to compare the merged model's task metric with");
        }
        if (o.Batch < 1)
        {
            throw ValidateThrow.Option("Batch", o.Batch.ToString(CultureInfo.InvariantCulture), "at least 1");
        }
        if (o.Sequence < 1)
        {
            throw ValidateThrow.Option("Sequence", o.Sequence.ToString(CultureInfo.InvariantCulture), "at least 1");
        }
        if (o.DeviceId < 0)
        {
            throw ValidateThrow.Option("DeviceId", o.DeviceId.ToString(CultureInfo.InvariantCulture), "at least 0");
        }
        if (o.Warmup < 0 || o.Runs < 0)
        {
            throw ValidateThrow.Option(o.Warmup < 0 ? "Warmup" : "Runs", Math.Min(o.Warmup, o.Runs).ToString(CultureInfo.InvariantCulture), "at least 0");
        }
        if (o.Duration is TimeSpan d && d <= TimeSpan.Zero)
        {
            throw ValidateThrow.Option("Duration", d.ToString(), "a positive time span");
        }
        if (!(o.Atol >= 0) || double.IsInfinity(o.Atol))
        {
            throw ValidateThrow.Option("Atol", F(o.Atol), "a finite number ≥ 0");
        }
        if (!(o.Rtol >= 0) || double.IsInfinity(o.Rtol))
        {
            throw ValidateThrow.Option("Rtol", F(o.Rtol), "a finite number ≥ 0");
        }
        if (!(o.MinTop1 >= 0 && o.MinTop1 <= 1))
        {
            throw ValidateThrow.Option("MinTop1", F(o.MinTop1), "a share in [0, 1]");
        }
        if (o.MaxLatencyRatio is double r)
        {
            if (!(r > 0) || double.IsInfinity(r))
            {
                throw ValidateThrow.Option("MaxLatencyRatio", F(r), "a finite number > 0");
            }
            if (request.BasePath is null)
            {
                throw ValidateThrow.Option("MaxLatencyRatio", "no base model", "a base model to take the merged/base ratio against");
            }
            if (o.Runs == 0 && o.Duration is null)
            {
                throw ValidateThrow.Option("MaxLatencyRatio", "latency not measured (Runs 0, no Duration)", "Runs > 0 or a Duration");
            }
        }
        if (o.MaxRegression is double m)
        {
            if (!(m >= 0) || double.IsInfinity(m))
            {
                throw ValidateThrow.Option("MaxRegression", F(m), "a finite fraction ≥ 0 (0.05 = 5%)");
            }
            if (o.BaselineReport is null)
            {
                throw ValidateThrow.Option("MaxRegression", "no baseline report", "a baseline report (--baseline) to compare the latency with");
            }
        }
        if (o.BaselineReport is not null && o.Runs == 0 && o.Duration is null)
        {
            throw ValidateThrow.Option("BaselineReport", "latency not measured (Runs 0, no Duration)", "Runs > 0 or a Duration, to compare with the baseline's latency");
        }
        if (o.IntraOpThreads < 0 || o.InterOpThreads < 0)
        {
            throw ValidateThrow.Option(o.IntraOpThreads < 0 ? "IntraOpThreads" : "InterOpThreads",
                Math.Min(o.IntraOpThreads, o.InterOpThreads).ToString(CultureInfo.InvariantCulture), "at least 0 (0: ONNX Runtime's default)");
        }
        if (o.VocabSize is long v && v < 1)
        {
            throw ValidateThrow.Option("VocabSize", v.ToString(CultureInfo.InvariantCulture), "at least 1");
        }
        if (o.DecodeTokens != 0 && o.DecodeTokens < 2)
        {
            throw ValidateThrow.Option("DecodeTokens", o.DecodeTokens.ToString(CultureInfo.InvariantCulture), "0 (no decoding) or at least 2 (the first token comes from the prefill, the rest from decode steps)");
        }
        if (o.PromptTokens < 1)
        {
            throw ValidateThrow.Option("PromptTokens", o.PromptTokens.ToString(CultureInfo.InvariantCulture), "at least 1");
        }
        if (o.DecodeRuns < 1)
        {
            throw ValidateThrow.Option("DecodeRuns", o.DecodeRuns.ToString(CultureInfo.InvariantCulture), "at least 1");
        }
        foreach (var (name, value) in o.Dims)
        {
            if (value < 0)
            {
                throw ValidateThrow.Option($"Dims[{name}]", value.ToString(CultureInfo.InvariantCulture), "at least 0");
            }
        }
    }

    /// <summary>Reads the baseline report, if any, and refuses it before anything runs when it is from another machine.</summary>
    private static ComparedReport? LoadBaseline(ValidationOptions options)
    {
        if (options.BaselineReport is not string path)
        {
            return null;
        }
        string full = Path.GetFullPath(path);
        var baseline = new ComparedReport(full, full, ValidationReport.Load(full));
        if (baseline.Report.Latency is null)
        {
            throw ValidateThrow.Invalid(full, "field latency", "null (the baseline run did not time the models)", "a report of a run that measured latency");
        }
        RunComparer.CheckMachine(baseline, BaselineThisRun, MachineInfo.Current(null), options.AllowDifferentMachines);
        return baseline;
    }

    private const string BaselineThisRun = "this run";

    /// <summary>This run against the baseline, role by role (<see cref="RunComparer"/>; refuses other machines or settings unless allowed).</summary>
    private static BaselineComparison CompareWithBaseline(ComparedReport baseline, ValidationReport report, ValidationOptions options)
    {
        var compareOptions = RunComparisonOptions.Default with
        {
            MaxRegression = options.MaxRegression,
            AllowDifferentMachines = options.AllowDifferentMachines,
        };
        var comparison = RunComparer.Compare([baseline, new ComparedReport(BaselineThisRun, BaselineThisRun, report)], compareOptions);
        var models = new List<BaselineLatency>();
        foreach (var row in comparison.Latency.Where(l => l.Report == 1 && l.Ratio is not null))
        {
            var before = comparison.Latency.Single(l => l.Report == 0 && l.Role == row.Role);
            models.Add(new BaselineLatency(row.Role, before.ContentSha256 == row.ContentSha256, before.Median, row.Median, row.Ratio!, row.RelativeToBase, row.Verdict));
        }
        return new BaselineComparison(baseline.Path, baseline.Report.CreatedUtc, options.MaxRegression, compareOptions.Confidence,
            compareOptions.Resamples, compareOptions.Seed, comparison.Differences, models);
    }

    private static (long? Vocab, string? Source) StaticVocab(ModelSession merged, ValidationOptions options)
    {
        if (options.VocabSize is long v)
        {
            return (v, "option");
        }
        var logits = merged.Outputs.FirstOrDefault(o => o.Name == options.LogitsOutput);
        if (logits is not null && logits.Dims.Count > 0
            && long.TryParse(logits.Dims[^1], NumberStyles.None, CultureInfo.InvariantCulture, out long last) && last > 0)
        {
            return (last, $"last dimension of output {logits.Name}");
        }
        return (null, null);
    }

    private static (long Batch, long Tokens) Throughput(IReadOnlyList<InputTensor> inputs, ValidationOptions options)
    {
        var ids = inputs.FirstOrDefault(t => t.Name == InputBuilder.InputIds && t.Shape.Count == 2);
        return ids is not null ? (ids.Shape[0], ids.ElementCount) : (options.Batch, (long)options.Batch * options.Sequence);
    }

    private static ModelReport DescribeModel(ModelSession s, OnnxFileScan scan, List<string> warnings)
    {
        string dir = Path.GetDirectoryName(s.Path)!;
        long external = 0;
        foreach (string location in scan.ExternalLocations)
        {
            string file = Path.Combine(dir, location);
            if (File.Exists(file))
            {
                external += new FileInfo(file).Length;
            }
            else
            {
                warnings.Add($"{s.Path}: external data file {location} not found when measuring the model's size.");
            }
        }
        string[] externalFiles = [.. scan.ExternalLocations.Order(StringComparer.Ordinal)];
        return new ModelReport(
            s.Role, s.Path, new FileInfo(s.Path).Length, external, externalFiles,
            s.SessionCreateMs, s.RssDeltaBytes, s.Inputs, s.Outputs)
        {
            ContentSha256 = ContentHash.Sha256(s.Path, externalFiles.Select(f => Path.Combine(dir, f))),
            ActiveAdapter = s.ActiveAdapterPath,
        };
    }

    private static string ToolVersion() =>
        typeof(Validator).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion
        ?? typeof(Validator).Assembly.GetName().Version?.ToString() ?? "unknown";
}
