using OnnxLora.Core.Peft.Internals;
using OnnxLora.Core.Safetensors;

namespace OnnxLora.Core.Peft;

/// <summary>
/// A PEFT adapter folder: <c>adapter_config.json</c> plus <c>adapter_model.safetensors</c>, with the
/// tensor keys parsed into <see cref="Modules"/> and validated against the config (ranks, shapes,
/// dtypes, no unknown or missing keys). The weights stay memory-mapped until disposed.
/// </summary>
public sealed partial class PeftAdapter : IDisposable
{
    /// <summary>The weights file PEFT writes with safe_serialization (the default).</summary>
    public const string WeightsFileName = "adapter_model.safetensors";

    /// <summary>The pickle weights file older PEFT wrote; not read by this project.</summary>
    public const string PickleWeightsFileName = "adapter_model.bin";

    /// <summary>The prefix of every key PEFT saves for LoRA-family adapters.</summary>
    public const string KeyPrefix = "base_model.model.";

    private readonly Dictionary<string, AdapterModule> _byPath;

    private PeftAdapter(string directory, PeftAdapterConfig config, SafetensorsFile weights,
        IReadOnlyList<AdapterModule> modules, IReadOnlyList<AdapterExtraTensor> extras, IReadOnlyList<string> warnings)
    {
        Directory = directory;
        Config = config;
        Weights = weights;
        Modules = modules;
        ExtraTensors = extras;
        Warnings = warnings;
        _byPath = modules.ToDictionary(m => m.ModulePath, StringComparer.Ordinal);
    }

    /// <summary>The adapter folder.</summary>
    public string Directory { get; }

    /// <summary>The parsed adapter_config.json.</summary>
    public PeftAdapterConfig Config { get; }

    /// <summary>The memory-mapped adapter_model.safetensors.</summary>
    public SafetensorsFile Weights { get; }

    /// <summary>Adapted modules, in the order their first key appears in the file.</summary>
    public IReadOnlyList<AdapterModule> Modules { get; }

    /// <summary>Tensors that replace base tensors outright (modules_to_save, trained biases, saved embeddings).</summary>
    public IReadOnlyList<AdapterExtraTensor> ExtraTensors { get; }

    /// <summary>
    /// What loading found that a user should know but that is not an error: config fields this version
    /// does not know, and tensors PEFT itself would ignore (LoRA factors of a module that
    /// modules_to_save replaces). Each names the file.
    /// </summary>
    public IReadOnlyList<string> Warnings { get; }

    /// <summary>The module at that path, or null.</summary>
    public AdapterModule? Find(string modulePath) => _byPath.GetValueOrDefault(modulePath);

    /// <summary>The module at that path; <see cref="OnnxLoraException"/> (bad input) naming the adapter when absent.</summary>
    public AdapterModule Get(string modulePath) =>
        _byPath.TryGetValue(modulePath, out var m) ? m : throw PeftThrow.Invalid(Directory, $"the adapter has no module '{modulePath}'.");

    /// <summary>The update of <paramref name="module"/> with its factors read as fp32 (the one ΔW composition, <see cref="ModuleUpdate"/>).</summary>
    public ModuleUpdate ReadUpdate(AdapterModule module) => ModuleUpdate.Read(this, module);

    /// <summary>The update of the module at <paramref name="modulePath"/>.</summary>
    public ModuleUpdate ReadUpdate(string modulePath) => ModuleUpdate.Read(this, Get(modulePath));

    /// <summary>A module tensor's values as fp32.</summary>
    public float[] ReadSingles(AdapterModule module, AdapterTensorRole role) => Weights.ReadSingles(module[role]);

    /// <summary>An extra tensor's values as fp32.</summary>
    public float[] ReadSingles(AdapterExtraTensor extra) => Weights.ReadSingles(extra.Tensor);

    /// <summary>The key PEFT saves a module tensor under.</summary>
    public static string KeyFor(string modulePath, AdapterModuleKind kind, AdapterTensorRole role) =>
        KeyPrefix + modulePath + SuffixFor(kind, role);

    /// <summary>The key suffix of a role (".lora_A.weight", ".lora_embedding_B", ".hada_w1_a", ...).</summary>
    public static string SuffixFor(AdapterModuleKind kind, AdapterTensorRole role) => (kind, role) switch
    {
        (AdapterModuleKind.LoraEmbedding, AdapterTensorRole.LoraA) => ".lora_embedding_A",
        (AdapterModuleKind.LoraEmbedding, AdapterTensorRole.LoraB) => ".lora_embedding_B",
        (_, AdapterTensorRole.LoraA) => ".lora_A.weight",
        (_, AdapterTensorRole.LoraB) => ".lora_B.weight",
        (_, AdapterTensorRole.Magnitude) => ".lora_magnitude_vector",
        (_, AdapterTensorRole.LoraBias) => ".lora_B.bias",
        (_, AdapterTensorRole.HadaW1A) => ".hada_w1_a",
        (_, AdapterTensorRole.HadaW1B) => ".hada_w1_b",
        (_, AdapterTensorRole.HadaW2A) => ".hada_w2_a",
        (_, AdapterTensorRole.HadaW2B) => ".hada_w2_b",
        (_, AdapterTensorRole.LokrW1) => ".lokr_w1",
        (_, AdapterTensorRole.LokrW1A) => ".lokr_w1_a",
        (_, AdapterTensorRole.LokrW1B) => ".lokr_w1_b",
        (_, AdapterTensorRole.LokrW2) => ".lokr_w2",
        (_, AdapterTensorRole.LokrW2A) => ".lokr_w2_a",
        (_, AdapterTensorRole.LokrW2B) => ".lokr_w2_b",
        _ => throw new ArgumentOutOfRangeException(nameof(role), role, null),
    };

    /// <summary>
    /// Opens an adapter folder and validates it completely.
    /// </summary>
    /// <exception cref="OnnxLoraException">Bad input: the folder, adapter_config.json or the weights are missing, or anything is
    /// malformed or inconsistent; the message names the file and key or field.</exception>
    public static PeftAdapter Load(string directory, SafetensorsLimits? limits = null)
    {
        directory = System.IO.Path.GetFullPath(directory);
        if (!System.IO.Directory.Exists(directory))
        {
            throw OnnxLoraException.NotFound("adapter folder", directory);
        }
        var config = PeftAdapterConfig.Load(System.IO.Path.Combine(directory, PeftAdapterConfig.FileName));
        string weightsPath = System.IO.Path.Combine(directory, WeightsFileName);
        if (!File.Exists(weightsPath))
        {
            string pickle = System.IO.Path.Combine(directory, PickleWeightsFileName);
            if (File.Exists(pickle))
            {
                throw PeftThrow.Invalid(pickle, $"PyTorch pickle adapter weights are not supported (they can run code when loaded); only {WeightsFileName} is read. Re-save the adapter with safe_serialization=True.");
            }
            throw PeftThrow.Invalid(directory, $"no {WeightsFileName} found beside {PeftAdapterConfig.FileName}.");
        }
        var weights = SafetensorsFile.Open(weightsPath, limits);
        try
        {
            var (modules, extras, warnings) = Internals.AdapterKeyParser.Parse(weightsPath, config, weights.Tensors);
            var all = config.UnknownFieldWarnings(System.IO.Path.Combine(directory, PeftAdapterConfig.FileName)).Concat(warnings).ToList();
            return new PeftAdapter(directory, config, weights, modules, extras, all);
        }
        catch
        {
            weights.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Encodes fp32 values as a tensor of <paramref name="dtype"/> (F32, F16, BF16 or F64; one
    /// round-to-nearest-even cast) for <see cref="Save"/>.
    /// </summary>
    public static (TensorSpec Spec, ReadOnlyMemory<byte> Data) EncodeTensor(string key, IReadOnlyList<long> shape, ReadOnlySpan<float> values, DType dtype = DType.F32)
    {
        var spec = new TensorSpec(key, dtype, shape.ToArray());
        if (spec.ElementCount != values.Length)
        {
            throw new ArgumentException($"tensor '{key}': {values.Length} values for shape {spec.ShapeText}", nameof(values));
        }
        if (!dtype.IsFloat())
        {
            throw new ArgumentException($"tensor '{key}': dtype {dtype} is not a floating-point type", nameof(dtype));
        }
        byte[] data = new byte[spec.ByteLength];
        FloatCodec.Encode(dtype, values, data);
        return (spec, data);
    }

    public void Dispose() => Weights.Dispose();
}
