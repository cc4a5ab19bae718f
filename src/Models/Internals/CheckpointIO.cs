using System.Runtime.InteropServices;
using OnnxLora.Core;
using OnnxLora.Core.HuggingFace;
using OnnxLora.Core.Safetensors;
using OnnxLora.Models.Onnx;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace OnnxLora.Models.Internals;

/// <summary>A parameter a model family expects in its checkpoint: Hugging Face name and shape.</summary>
internal sealed record ParameterSpec(string Name, long[] Shape);

/// <summary>Where one expected parameter is stored in a checkpoint.</summary>
internal sealed record ParameterSource(ParameterSpec Spec, SafetensorsFile File, TensorInfo Tensor);

/// <summary>
/// Matches checkpoint tensors against a family's expected layout before anything is allocated,
/// copies them into a model, and writes a model back as config.json + model.safetensors.
/// </summary>
internal static class CheckpointIO
{
    /// <summary>
    /// Pairs every expected parameter with its stored tensor. <paramref name="mapName"/> turns a stored
    /// name into the model's name, or null for a tensor to ignore (known buffers, task heads).
    /// </summary>
    /// <exception cref="OnnxLoraException">Bad input: missing, unexpected, duplicated, non-float or wrongly shaped tensors; ALL of them are listed.</exception>
    public static IReadOnlyList<ParameterSource> Match(SafetensorsCheckpoint checkpoint, IReadOnlyList<ParameterSpec> layout, Func<string, string?> mapName, string family)
    {
        var problems = new List<string>();
        var stored = new Dictionary<string, (SafetensorsFile File, TensorInfo Tensor)>(StringComparer.Ordinal);
        foreach (var file in checkpoint.Shards)
        {
            foreach (var tensor in file.Tensors)
            {
                string? name = mapName(tensor.Name);
                if (name is null)
                {
                    continue;
                }
                if (!stored.TryAdd(name, (file, tensor)))
                {
                    problems.Add($"'{name}' is stored twice (as '{stored[name].Tensor.Name}' and '{tensor.Name}')");
                }
            }
        }
        var expected = layout.ToDictionary(p => p.Name, StringComparer.Ordinal);
        var sources = new List<ParameterSource>();
        foreach (var spec in layout)
        {
            if (!stored.TryGetValue(spec.Name, out var found))
            {
                problems.Add($"missing '{spec.Name}' (expected shape {ModelThrow.Shape(spec.Shape)})");
                continue;
            }
            if (!found.Tensor.Shape.SequenceEqual(spec.Shape))
            {
                problems.Add($"'{found.Tensor.Name}': shape {ModelThrow.Shape(found.Tensor.Shape)}, expected {ModelThrow.Shape(spec.Shape)}");
                continue;
            }
            if (!found.Tensor.DType.IsFloat())
            {
                problems.Add($"'{found.Tensor.Name}': dtype {found.Tensor.DType}, expected F32, F16, BF16 or F64");
                continue;
            }
            sources.Add(new ParameterSource(spec, found.File, found.Tensor));
        }
        foreach (var (name, found) in stored)
        {
            if (!expected.ContainsKey(name))
            {
                problems.Add($"unexpected '{found.Tensor.Name}' (shape {ModelThrow.Shape(found.Tensor.Shape)})");
            }
        }
        if (problems.Count > 0)
        {
            throw ModelThrow.InvalidMany(checkpoint.Directory, $"weights do not match the {family} layout given by config.json", problems);
        }
        return sources;
    }

    /// <summary>
    /// Rejects a config whose layer count cannot fit the checkpoint before the expected layout (one
    /// entry per parameter) is built, so a hostile num_hidden_layers cannot exhaust memory.
    /// </summary>
    public static void CheckLayerCount(SafetensorsCheckpoint checkpoint, string configPath, int layers, int tensorsPerLayer)
    {
        long available = checkpoint.Tensors.Count;
        if ((long)layers * tensorsPerLayer > available)
        {
            throw ModelThrow.Invalid(configPath, "field 'num_hidden_layers'", layers.ToString(System.Globalization.CultureInfo.InvariantCulture),
                $"at most {available / tensorsPerLayer} (the checkpoint holds {available} tensors, {tensorsPerLayer} or more per layer)");
        }
    }

    /// <summary>Records where each matched tensor is stored, for a model built without weights (<see cref="LayerFactory.WithoutWeights"/>).</summary>
    public static void Register(OnnxWeightStore store, IReadOnlyList<ParameterSource> sources)
    {
        foreach (var source in sources)
        {
            store.Add(source.Spec.Name, source.File, source.Tensor);
        }
    }

    /// <summary>Copies the matched tensors (converted to fp32) into the model's parameters of the same names.</summary>
    public static void Copy(nn.Module model, IReadOnlyList<ParameterSource> sources)
    {
        var parameters = model.named_parameters().ToDictionary(p => p.name, p => p.parameter, StringComparer.Ordinal);
        using var noGrad = no_grad();
        foreach (var source in sources)
        {
            var target = parameters[source.Spec.Name];
            if (source.Tensor.DType == DType.F32 && source.Tensor.ByteLength <= int.MaxValue && target.dtype == ScalarType.Float32 && target.is_contiguous())
            {
                // set_bytes only reads its argument; it takes Span<byte> for historical reasons.
                var bytes = source.File.GetBytes(source.Tensor);
                target.bytes = MemoryMarshal.CreateSpan(ref MemoryMarshal.GetReference(bytes), bytes.Length);
            }
            else
            {
                float[] values = source.File.ReadSingles(source.Tensor);
                using var loaded = tensor(values, source.Spec.Shape);
                target.copy_(loaded);
            }
        }
    }

    /// <summary>
    /// The model's tensor for each layout name: the parameter itself, or — when the module was wrapped
    /// by LoRA — the wrapper's <c>base_layer</c> parameter (so a merged or LoRA-injected model saves
    /// under the original Hugging Face names).
    /// </summary>
    public static IReadOnlyList<(string Name, Tensor Tensor)> BaseTensors(nn.Module model, IReadOnlyList<ParameterSpec> layout)
    {
        var parameters = model.named_parameters().ToDictionary(p => p.name, p => p.parameter, StringComparer.Ordinal);
        var result = new List<(string, Tensor)>();
        foreach (var spec in layout)
        {
            int dot = spec.Name.LastIndexOf('.');
            string wrapped = spec.Name[..dot] + ".base_layer" + spec.Name[dot..];
            Parameter p = parameters.GetValueOrDefault(spec.Name) ?? parameters.GetValueOrDefault(wrapped)
                ?? throw new InvalidOperationException($"model has no parameter '{spec.Name}' (nor '{wrapped}').");
            if (!p.shape.SequenceEqual(spec.Shape))
            {
                throw new InvalidOperationException($"parameter '{spec.Name}' has shape {ModelThrow.Shape(p.shape)}, expected {ModelThrow.Shape(spec.Shape)}.");
            }
            result.Add((spec.Name, p));
        }
        return result;
    }

    /// <summary>Writes config.json and model.safetensors into <paramref name="directory"/>, each atomically.</summary>
    /// <exception cref="OnnxLoraException">Bad input: either file exists and <paramref name="overwrite"/> is false (nothing is written
    /// then), or the dtype is not F32, F16 or BF16.</exception>
    public static void Save(string directory, HfConfig config, IReadOnlyList<(string Name, Tensor Tensor)> tensors, DType dtype, bool overwrite)
    {
        if (dtype is not (DType.F32 or DType.F16 or DType.BF16))
        {
            throw ModelThrow.Argument(nameof(dtype), "checkpoint dtype", dtype.ToString(), "F32, F16 or BF16");
        }
        directory = Path.GetFullPath(directory);
        string configPath = Path.Combine(directory, HfConfig.FileName);
        string weightsPath = Path.Combine(directory, SafetensorsCheckpoint.SingleFileName);
        if (!overwrite)
        {
            foreach (string path in new[] { configPath, weightsPath, Path.Combine(directory, SafetensorsCheckpoint.IndexFileName) })
            {
                if (File.Exists(path))
                {
                    throw OnnxLoraException.OutputExists(path);
                }
            }
        }
        Directory.CreateDirectory(directory);
        var scalar = dtype.ToScalarType();
        var specs = tensors.Select(t => new TensorSpec(t.Name, dtype, t.Tensor.shape)).ToList();
        using (var writer = SafetensorsWriter.Create(weightsPath, specs, new Dictionary<string, string> { ["format"] = "pt" }, overwrite))
        {
            foreach (var (name, t) in tensors)
            {
                using var scope = NewDisposeScope();
                var data = t.detach().to(scalar).contiguous();
                writer.Write(name, data.bytes);
            }
            writer.Commit();
        }
        (config with { TorchDtype = dtype switch { DType.F16 => "float16", DType.BF16 => "bfloat16", _ => "float32" } }).Save(configPath, overwrite);
    }

    /// <summary>
    /// Fills every parameter from a generator seeded with <paramref name="seed"/>: N(0, std²), except
    /// norm scales (names ending in "norm.weight"), which get 1 + N(0, std²). Deterministic for a seed.
    /// </summary>
    public static void Randomize(nn.Module model, long seed, double std)
    {
        using var generator = new Generator(unchecked((ulong)seed));
        using var noGrad = no_grad();
        foreach (var (name, p) in model.named_parameters())
        {
            p.normal_(0, std, generator);
            if (name.EndsWith("norm.weight", StringComparison.OrdinalIgnoreCase))
            {
                p.add_(1.0);
            }
        }
    }
}
