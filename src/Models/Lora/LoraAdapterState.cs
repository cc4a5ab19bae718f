using OnnxLora.Core.Peft;
using OnnxLora.Models.Internals;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace OnnxLora.Models.Lora;

/// <summary>
/// The adapter tensors of an injected model under PEFT's saved names
/// (<c>adapter_model.safetensors</c> keys, adapter name removed):
/// <list type="bullet">
/// <item><c>base_model.model.{path}.lora_A.weight</c> [r, in], <c>base_model.model.{path}.lora_B.weight</c> [out, r] for Linear targets;</item>
/// <item><c>base_model.model.{path}.lora_magnitude_vector</c> [out] with DoRA;</item>
/// <item><c>base_model.model.{path}.lora_embedding_A</c> [r, num_embeddings], <c>base_model.model.{path}.lora_embedding_B</c> [dim, r] for Embedding targets;</item>
/// <item><c>base_model.model.{path}.{param}</c> (e.g. <c>.weight</c>, <c>.bias</c>) for every parameter of a modules_to_save module.</item>
/// </list>
/// The model-side name is the same key without the <c>base_model.model.</c> prefix (for DoRA PEFT's
/// in-memory <c>.weight</c> suffix is also accepted when loading).
/// </summary>
public static class LoraAdapterState
{
    /// <summary>Every adapter key with the model parameter it stands for, in module order.</summary>
    public static IReadOnlyList<(string Key, Parameter Parameter)> Entries(nn.Module model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var entries = new List<(string, Parameter)>();
        foreach (var (path, layer) in LoraInjection.LoraLayers(model))
        {
            string p = PeftAdapter.KeyPrefix + path + ".";
            switch (layer)
            {
                case LoraLinear linear:
                    entries.Add((p + "lora_A.weight", linear.LoraA));
                    entries.Add((p + "lora_B.weight", linear.LoraB));
                    if (linear.Magnitude is { } magnitude)
                    {
                        entries.Add((p + "lora_magnitude_vector", magnitude));
                    }
                    break;
                case LoraEmbedding embedding:
                    entries.Add((p + "lora_embedding_A", embedding.LoraEmbeddingA));
                    entries.Add((p + "lora_embedding_B", embedding.LoraEmbeddingB));
                    break;
            }
        }
        if (LoraInjection.ReportOf(model) is { } report)
        {
            var byPath = model.named_modules().ToDictionary(m => m.name, m => m.module, StringComparer.Ordinal);
            foreach (string path in report.ModulesToSave)
            {
                foreach (var (name, parameter) in byPath[path].named_parameters())
                {
                    entries.Add((PeftAdapter.KeyPrefix + path + "." + name, parameter));
                }
            }
        }
        return entries;
    }

    /// <summary>Detached fp32 copies of the adapter tensors keyed by PEFT names; the caller owns (disposes) them.</summary>
    public static Dictionary<string, Tensor> Get(nn.Module model)
    {
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (key, parameter) in Entries(model))
        {
            using var view = parameter.detach();
            result[key] = view.clone().DetachFromDisposeScope();
        }
        return result;
    }

    /// <summary>
    /// Copies adapter tensors keyed by PEFT names into an injected model (converted to the parameter's dtype).
    /// Every key must belong to the model and every adapter parameter must be given, with the same shape.
    /// </summary>
    /// <param name="model">A model after <see cref="LoraInjection.Apply"/>.</param>
    /// <param name="tensors">Adapter tensors keyed by PEFT names (not disposed here).</param>
    /// <param name="source">Where the tensors came from (a file path), used in error messages.</param>
    /// <exception cref="Core.OnnxLoraException">Bad input: missing, unexpected or misshapen tensors; all of them are listed.</exception>
    public static void Load(nn.Module model, IReadOnlyDictionary<string, Tensor> tensors, string source)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        var entries = Entries(model);
        if (entries.Count == 0)
        {
            throw new InvalidOperationException("the model has no LoRA adapters; inject them (LoraInjection.Apply) before loading adapter weights.");
        }
        var expected = entries.ToDictionary(e => e.Key, e => e.Parameter, StringComparer.Ordinal);
        var given = new Dictionary<string, (string Key, Tensor Tensor)>(StringComparer.Ordinal);
        var problems = new List<string>();
        foreach (var (key, tensor) in tensors)
        {
            string canonical = key.EndsWith(".lora_magnitude_vector.weight", StringComparison.Ordinal) ? key[..^".weight".Length] : key;
            if (!expected.ContainsKey(canonical))
            {
                problems.Add($"unexpected '{key}' (shape {ModelThrow.Shape(tensor.shape)}): no such adapter tensor in the model");
            }
            else if (!given.TryAdd(canonical, (key, tensor)))
            {
                problems.Add($"'{canonical}' is given twice (as '{given[canonical].Key}' and '{key}')");
            }
        }
        foreach (var (key, parameter) in expected)
        {
            if (!given.TryGetValue(key, out var found))
            {
                problems.Add($"missing '{key}' (expected shape {ModelThrow.Shape(parameter.shape)})");
            }
            else if (!found.Tensor.shape.SequenceEqual(parameter.shape))
            {
                problems.Add($"'{found.Key}': shape {ModelThrow.Shape(found.Tensor.shape)}, expected {ModelThrow.Shape(parameter.shape)}");
            }
            else if (!is_floating_point(found.Tensor))
            {
                problems.Add($"'{found.Key}': dtype {found.Tensor.dtype}, expected a floating-point tensor");
            }
        }
        if (problems.Count > 0)
        {
            throw ModelThrow.InvalidMany(source, "adapter tensors do not match the injected model", problems);
        }
        using var noGrad = no_grad();
        foreach (var (key, parameter) in expected)
        {
            parameter.copy_(given[key].Tensor);
        }
    }
}
