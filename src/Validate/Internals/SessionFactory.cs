using System.Diagnostics;
using System.Text.RegularExpressions;
using Microsoft.ML.OnnxRuntime;
using OnnxLora.Core;

namespace OnnxLora.Validate.Internals;

/// <summary>
/// Creates every InferenceSession of a run from ONE SessionOptions object, so the models compared share threads,
/// optimisation level and provider. The provider is decided on the first model: CUDA when asked for and it loads,
/// else CPU (with ORT's reason recorded), or a bad-input <see cref="OnnxLoraException"/> when fallback is off.
/// </summary>
internal sealed partial class SessionFactory : IDisposable
{
    public const string CudaProvider = "CUDAExecutionProvider";
    public const string CpuProvider = "CPUExecutionProvider";

    private readonly ValidationOptions _options;
    private SessionOptions? _sessionOptions;

    public SessionFactory(ValidationOptions options)
    {
        _options = options;
        OrtLog.EnsureEnvironment();
    }

    /// <summary>The provider the sessions use; known after the first <see cref="Load"/>.</summary>
    public string? Provider { get; private set; }

    /// <summary>Why CUDA was not used although asked for (ORT's messages), else null.</summary>
    public string? FallbackReason { get; private set; }

    public bool UsesCuda => Provider == CudaProvider;

    /// <summary>The provider options set (device_id for CUDA); the rest are ONNX Runtime's defaults.</summary>
    public IReadOnlyList<ProviderOption> ProviderOptions =>
        UsesCuda ? [new ProviderOption("device_id", _options.DeviceId.ToString(System.Globalization.CultureInfo.InvariantCulture))] : [];

    public SessionSettings Settings => new(_options.IntraOpThreads, _options.InterOpThreads, _options.GraphOptimization, "sequential", _options.CpuMemArena);

    /// <summary>Loads a model; the first call decides the provider for all.</summary>
    /// <exception cref="OnnxLoraException">ONNX Runtime cannot load the model (bad input).</exception>
    public InferenceSession Load(string path, out double createMs)
    {
        if (_sessionOptions is not null)
        {
            return Create(path, _sessionOptions, out createMs);
        }
        if (_options.Device == ExecutionDevice.Cpu)
        {
            _sessionOptions = MakeOptions(cuda: false);
            Provider = CpuProvider;
            return Create(path, _sessionOptions, out createMs);
        }

        long mark = OrtLog.Mark();
        SessionOptions? cudaOptions = null;
        try
        {
            cudaOptions = MakeOptions(cuda: true);
            var session = CreateRaw(path, cudaOptions, out createMs);
            _sessionOptions = cudaOptions;
            Provider = CudaProvider;
            return session;
        }
        catch (OnnxRuntimeException e)
        {
            cudaOptions?.Dispose();
            string reason = Describe(e, OrtLog.ErrorsSince(mark));
            if (_options.Device == ExecutionDevice.Cuda && !_options.AllowCpuFallback)
            {
                throw ValidateThrow.ProviderUnavailable(_options.DeviceId, reason, e);
            }
            FallbackReason = reason;
        }
        _sessionOptions = MakeOptions(cuda: false);
        Provider = CpuProvider;
        return Create(path, _sessionOptions, out createMs);
    }

    /// <summary>
    /// Sessions kept for the factory's lifetime and handed to every caller that asks for the same model with
    /// <see cref="LoadShared"/>: several adapter pairs run in ONE session of the adapter-ready graph (each with its own
    /// run options and active adapter), and share one session of the base model.
    /// </summary>
    private readonly Dictionary<string, (InferenceSession Session, double CreateMs, long? RssDelta)> _shared = new(StringComparer.Ordinal);

    /// <summary>The session of <paramref name="path"/>, created on the first call (with its creation time and resident-memory growth) and owned by the factory.</summary>
    public InferenceSession LoadShared(string path, out double createMs, out long? rssDelta)
    {
        if (!_shared.TryGetValue(path, out var entry))
        {
            long? before = ProcessMemory.ResidentBytes();
            var session = Load(path, out double ms);
            long? after = ProcessMemory.ResidentBytes();
            entry = (session, ms, before is long b && after is long a ? a - b : null);
            _shared[path] = entry;
        }
        (createMs, rssDelta) = (entry.CreateMs, entry.RssDelta);
        return entry.Session;
    }

    public void Dispose()
    {
        foreach (var (session, _, _) in _shared.Values)
        {
            session.Dispose();
        }
        _shared.Clear();
        _sessionOptions?.Dispose();
    }

    private static InferenceSession Create(string path, SessionOptions options, out double createMs)
    {
        try
        {
            return CreateRaw(path, options, out createMs);
        }
        catch (OnnxRuntimeException e)
        {
            throw ValidateThrow.Invalid(path, $"ONNX Runtime could not load the model: {e.Message}", e);
        }
    }

    private static InferenceSession CreateRaw(string path, SessionOptions options, out double createMs)
    {
        long start = Stopwatch.GetTimestamp();
        var session = new InferenceSession(path, options);
        createMs = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        return session;
    }

    /// <summary>
    /// One line for consoles from a <see cref="FallbackReason"/>: the first shared library that could not be loaded
    /// ("libcublasLt.so.13 not found"), else the first line of ONNX Runtime's message without its error code,
    /// source location and trailing "; GPU=…" details.
    /// </summary>
    public static string ShortReason(string reason)
    {
        var library = MissingLibrary().Match(reason);
        if (library.Success)
        {
            return $"{library.Groups[1].Value} not found";
        }
        string line = reason.Trim().Split('\n')[0].Split(" | ")[0];
        var status = OrtStatus().Match(line);
        if (status.Success)
        {
            line = status.Groups[1].Value;
        }
        line = ErrorCode().Replace(line, "");
        int details = line.IndexOf(" ; ", StringComparison.Ordinal);
        line = (details > 0 ? line[..details] : line).Trim().TrimEnd('.');
        return line.Length > 0 ? line : "ONNX Runtime gave no reason";
    }

    private static string Describe(OnnxRuntimeException e, IReadOnlyList<string> logged)
    {
        var parts = new List<string> { e.Message.Trim() };
        parts.AddRange(logged.Where(m => !parts.Contains(m)));
        return string.Join(" | ", parts);
    }

    /// <summary>dlopen's "libcublasLt.so.13: cannot open shared object file" (the name without its folder).</summary>
    [GeneratedRegex(@"([\w.+-]+\.so(?:\.\d+)*): cannot open shared object file")]
    private static partial Regex MissingLibrary();

    /// <summary>ORT's "… [ONNXRuntimeError] : 1 : FAIL : message": the message.</summary>
    [GeneratedRegex(@"\[ONNXRuntimeError\] : \d+ : \w+ : (.*)$")]
    private static partial Regex OrtStatus();

    /// <summary>ORT's "[ErrorCode:Fail] " prefix.</summary>
    [GeneratedRegex(@"^\s*\[ErrorCode:\w+\]\s*")]
    private static partial Regex ErrorCode();

    private SessionOptions MakeOptions(bool cuda)
    {
        var o = new SessionOptions
        {
            IntraOpNumThreads = _options.IntraOpThreads,
            InterOpNumThreads = _options.InterOpThreads,
            ExecutionMode = ExecutionMode.ORT_SEQUENTIAL,
            EnableCpuMemArena = _options.CpuMemArena,
            GraphOptimizationLevel = _options.GraphOptimization switch
            {
                GraphOptimization.None => GraphOptimizationLevel.ORT_DISABLE_ALL,
                GraphOptimization.Basic => GraphOptimizationLevel.ORT_ENABLE_BASIC,
                GraphOptimization.Extended => GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                _ => GraphOptimizationLevel.ORT_ENABLE_ALL,
            },
        };
        if (cuda)
        {
            try
            {
                o.AppendExecutionProvider_CUDA(_options.DeviceId);
            }
            catch
            {
                o.Dispose();
                throw;
            }
        }
        return o;
    }
}
