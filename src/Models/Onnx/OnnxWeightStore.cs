using OnnxLora.Core;
using OnnxLora.Core.Onnx;
using OnnxLora.Core.Safetensors;

namespace OnnxLora.Models.Onnx;

/// <summary>
/// Where the weights of modules built without them (TorchSharp's meta device) are stored: parameter
/// name (Hugging Face name, as the emission names its initializers) → a tensor of a safetensors
/// checkpoint, optionally rewritten in fp32 when it is written (a merge: W + ΔW). Given to an
/// <see cref="OnnxEmitContext"/>, it makes every parameter initializer a deferred
/// <see cref="OnnxTensorSource"/>, so the weight bytes go from the checkpoint to the ONNX data file
/// tensor by tensor.
/// </summary>
public sealed class OnnxWeightStore
{
    private readonly Dictionary<string, Entry> _entries = new(StringComparer.Ordinal);
    private readonly List<string> _names = [];

    private sealed record Entry(string Key, SafetensorsFile File, TensorInfo Tensor, TensorRewrite? Rewrite);

    /// <summary>The stored parameters (aliases excluded), in the order added, with their stored specs.</summary>
    public IReadOnlyDictionary<string, TensorSpec> Specs => _names.ToDictionary(n => n, n => _entries[n].Tensor.Spec, StringComparer.Ordinal);

    /// <summary>Parameter <paramref name="name"/> is <paramref name="tensor"/> of <paramref name="file"/> (which must stay open until the model is written).</summary>
    public void Add(string name, SafetensorsFile file, TensorInfo tensor)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentNullException.ThrowIfNull(file);
        ArgumentNullException.ThrowIfNull(tensor);
        _entries.Add(name, new Entry(file.Path + ":" + tensor.Name, file, tensor, null));
        _names.Add(name);
    }

    /// <summary>
    /// Parameter <paramref name="name"/>, already stored, is now <paramref name="tensor"/> of <paramref name="file"/> (an adapter's
    /// modules_to_save copy of it); its aliases keep the previous tensor.
    /// </summary>
    public void Replace(string name, SafetensorsFile file, TensorInfo tensor)
    {
        ArgumentNullException.ThrowIfNull(file);
        ArgumentNullException.ThrowIfNull(tensor);
        _ = Get(name);
        _entries[name] = new Entry(file.Path + ":" + tensor.Name, file, tensor, null);
    }

    /// <summary>Parameter <paramref name="name"/> shares <paramref name="existing"/>'s storage (tied weights): emitted once, reused.</summary>
    public void Alias(string name, string existing)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        _entries.Add(name, _entries[existing]);
    }

    /// <summary>
    /// Parameter <paramref name="name"/> is written as <paramref name="rewrite"/> makes it from its fp32 values
    /// (stored layout, row-major). It no longer shares storage with its aliases, which keep the stored value.
    /// </summary>
    public void Rewrite(string name, TensorRewrite rewrite)
    {
        ArgumentNullException.ThrowIfNull(rewrite);
        var entry = _entries[name];
        _entries[name] = entry with { Key = entry.Key + "|rewritten:" + name, Rewrite = rewrite };
    }

    /// <summary>Adds every parameter of <paramref name="child"/> (aliases included) under <paramref name="prefix"/> + its name: a submodule's weights in its parent's names.</summary>
    internal void AddPrefixed(string prefix, OnnxWeightStore child)
    {
        ArgumentNullException.ThrowIfNull(child);
        foreach (var (name, entry) in child._entries)
        {
            _entries.Add(prefix + name, entry);
        }
        _names.AddRange(child._names.Select(n => prefix + n));
    }

    /// <summary>True when <paramref name="name"/> is stored here.</summary>
    public bool Contains(string name) => _entries.ContainsKey(name);

    /// <summary>Identifies the stored data of <paramref name="name"/>: equal keys, same bytes (tied weights).</summary>
    internal string StorageKey(string name) => Get(name).Key;

    /// <summary>The data of <paramref name="name"/> as <paramref name="dtype"/>, transposed when asked.</summary>
    internal OnnxTensorSource Source(string name, DType dtype, bool transpose)
    {
        var entry = Get(name);
        return OnnxTensorSource.FromSafetensors(entry.File, entry.Tensor, dtype, transpose, entry.Rewrite);
    }

    /// <summary>The values of <paramref name="name"/> in fp32, stored layout, rewritten when a rewrite is set: one tensor read whole (a value computed from a weight at export).</summary>
    internal float[] ReadSingles(string name)
    {
        var entry = Get(name);
        float[] values = entry.File.ReadSingles(entry.Tensor);
        entry.Rewrite?.Whole(values);
        return values;
    }

    private Entry Get(string name) => _entries.TryGetValue(name, out var entry)
        ? entry
        : throw new InvalidOperationException($"parameter '{name}' is emitted but the weight store has no tensor for it.");
}
