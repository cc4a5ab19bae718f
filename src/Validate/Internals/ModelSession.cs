using System.Diagnostics;
using Microsoft.ML.OnnxRuntime;

namespace OnnxLora.Validate.Internals;

/// <summary>
/// One loaded model and every native handle that belongs to it: the InferenceSession, its run options, the IOBinding
/// used for timed runs and the pre-allocated output OrtValues (on the device for CUDA). Disposed in one place.
/// </summary>
internal sealed class ModelSession : IDisposable
{
    private readonly InferenceSession _session;
    private readonly bool _ownsSession;
    private readonly RunOptions _runOptions = new();
    private readonly List<OrtValue> _boundOutputs = [];
    private OrtIoBinding? _binding;
    private OrtAllocator? _deviceAllocator;
    private OrtMemoryInfo? _deviceMemory;
    private OrtLoraAdapter? _adapter;

    private ModelSession(ModelRole role, string path, InferenceSession session, double createMs, long? rssDelta, bool ownsSession)
    {
        Role = role;
        Path = path;
        _session = session;
        _ownsSession = ownsSession;
        SessionCreateMs = createMs;
        RssDeltaBytes = rssDelta;
        Inputs = [.. session.InputMetadata.Select(kv => OrtTypes.Signature(path, kv.Key, kv.Value))];
        Outputs = [.. session.OutputMetadata.Select(kv => OrtTypes.Signature(path, kv.Key, kv.Value))];
    }

    public ModelRole Role { get; }

    public string Path { get; }

    public double SessionCreateMs { get; }

    public long? RssDeltaBytes { get; }

    public IReadOnlyList<TensorSignature> Inputs { get; }

    public IReadOnlyList<TensorSignature> Outputs { get; }

    /// <summary>The ONNX Runtime adapter active in every run of this session, or null.</summary>
    public string? ActiveAdapterPath { get; private set; }

    /// <summary>
    /// Loads <paramref name="path"/>; with <paramref name="adapterFile"/>, that ONNX Runtime adapter is activated in the
    /// run options of every run (<see cref="OrtLoraAdapter"/>, parameters kept on the CPU: ONNX Runtime copies them to
    /// the device per run). With <paramref name="shared"/>, the InferenceSession is the factory's one for this path
    /// (<see cref="SessionFactory.LoadShared"/>): several ModelSessions, each with its own run options, adapter and
    /// binding, run the one loaded model, switching adapters between runs without reloading.
    /// </summary>
    public static ModelSession Load(ModelRole role, string path, SessionFactory factory, string? adapterFile = null, bool shared = false)
    {
        InferenceSession session;
        double ms;
        long? rssDelta;
        if (shared)
        {
            session = factory.LoadShared(path, out ms, out rssDelta);
        }
        else
        {
            long? before = ProcessMemory.ResidentBytes();
            session = factory.Load(path, out ms);
            long? after = ProcessMemory.ResidentBytes();
            rssDelta = before is long b && after is long a ? a - b : null;
        }
        try
        {
            var loaded = new ModelSession(role, path, session, ms, rssDelta, ownsSession: !shared);
            if (adapterFile is not null)
            {
                try
                {
                    loaded._adapter = OrtLoraAdapter.Create(adapterFile, null);
                    loaded._runOptions.AddActiveLoraAdapter(loaded._adapter);
                    loaded.ActiveAdapterPath = adapterFile;
                }
                catch (OnnxRuntimeException e)
                {
                    loaded.Dispose();
                    throw ValidateThrow.Invalid(adapterFile, $"ONNX Runtime refused the adapter file: {e.Message}", e);
                }
            }
            return loaded;
        }
        catch
        {
            if (!shared)
            {
                session.Dispose();
            }
            throw;
        }
    }

    /// <summary>Runs once, unbound, and copies every output to the host.</summary>
    public IReadOnlyDictionary<string, HostTensor> RunForOutputs(InputSet inputs)
    {
        var names = Inputs.Select(i => i.Name).ToArray();
        var values = names.Select(n => inputs[n]).ToArray();
        var outputNames = Outputs.Select(o => o.Name).ToArray();
        IDisposableReadOnlyCollection<OrtValue> results;
        try
        {
            results = _session.Run(_runOptions, names, values, outputNames);
        }
        catch (OnnxRuntimeException e)
        {
            throw ValidateThrow.Invalid(Path, $"ONNX Runtime failed to run the model on the validation inputs: {e.Message}", e);
        }
        using var owned = results;
        var host = new Dictionary<string, HostTensor>(StringComparer.Ordinal);
        for (int i = 0; i < outputNames.Length; i++)
        {
            host[outputNames[i]] = OrtTypes.ToHost(outputNames[i], results.ElementAt(i));
        }
        return host;
    }

    /// <summary>
    /// One unbound run on caller-owned OrtValues (the decode loop), in this session's run options; the caller owns the
    /// returned outputs, in <paramref name="outputNames"/> order.
    /// </summary>
    public IDisposableReadOnlyCollection<OrtValue> Run(IReadOnlyCollection<string> inputNames, IReadOnlyCollection<OrtValue> values, IReadOnlyCollection<string> outputNames)
    {
        try
        {
            return _session.Run(_runOptions, inputNames, values, outputNames);
        }
        catch (OnnxRuntimeException e)
        {
            throw ValidateThrow.Invalid(Path, $"ONNX Runtime failed to run a decode step: {e.Message}", e);
        }
    }

    /// <summary>
    /// Binds the shared input OrtValues and pre-allocated outputs of the shapes a first run produced, on the device
    /// for CUDA (ORT copies the small CPU inputs in each run), so timed runs allocate nothing.
    /// </summary>
    public void Bind(InputSet inputs, IReadOnlyDictionary<string, HostTensor> shapes, bool cuda, int deviceId)
    {
        _binding = _session.CreateIoBinding();
        foreach (var input in Inputs)
        {
            _binding.BindInput(input.Name, inputs[input.Name]);
        }
        OrtAllocator allocator = OrtAllocator.DefaultInstance;
        if (cuda)
        {
            _deviceMemory = new OrtMemoryInfo("Cuda", OrtAllocatorType.DeviceAllocator, deviceId, OrtMemType.Default);
            _deviceAllocator = new OrtAllocator(_session, _deviceMemory);
            allocator = _deviceAllocator;
        }
        foreach (var output in Outputs)
        {
            var host = shapes[output.Name];
            var value = OrtValue.CreateAllocatedTensorValue(allocator, OrtTypes.ToOrt(host.ElementType, $"output {output.Name}"), host.Shape);
            _boundOutputs.Add(value);
            _binding.BindOutput(output.Name, value);
        }
        _binding.SynchronizeBoundInputs();
    }

    /// <summary><paramref name="runs"/> bound runs back to back; returns their mean wall time in milliseconds, device work included.</summary>
    public double TimedRun(int runs = 1)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(runs, 1);
        var binding = _binding ?? throw new InvalidOperationException("Bind must be called before timed runs.");
        long start = Stopwatch.GetTimestamp();
        for (int i = 0; i < runs; i++)
        {
            _session.RunWithBinding(_runOptions, binding);
            binding.SynchronizeBoundOutputs();
        }
        return Stopwatch.GetElapsedTime(start).TotalMilliseconds / runs;
    }

    public void Dispose()
    {
        _binding?.Dispose();
        foreach (var v in _boundOutputs)
        {
            v.Dispose();
        }
        _boundOutputs.Clear();
        _deviceAllocator?.Dispose();
        _deviceMemory?.Dispose();
        _runOptions.Dispose();
        _adapter?.Dispose();
        if (_ownsSession)
        {
            _session.Dispose();
        }
    }
}
