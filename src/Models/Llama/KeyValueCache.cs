using System.Globalization;
using OnnxLora.Models.Internals;
using static TorchSharp.torch;

namespace OnnxLora.Models.Llama;

/// <summary>
/// The keys and values of the tokens a decoder has already seen, one pair per layer, each
/// [batch, num_kv_heads, past_sequence, head_dim]: keys after the rotary embedding, heads not repeated for
/// grouped-query attention. A minimal form of Hugging Face Transformers' <c>DynamicCache</c>
/// (<c>cache_utils.py</c>: <c>update(key_states, value_states, layer_idx)</c> concatenates along the sequence axis;
/// <c>get_seq_length()</c> is layer 0's length); the with-past ONNX export holds the same tensors as
/// <c>past_key_values.{i}.key</c> / <c>.value</c>. Pass one to
/// <see cref="LlamaForCausalLM.forward(Tensor, Tensor?, Tensor?, KeyValueCache?)"/>: each call appends its tokens.
/// </summary>
/// <remarks>
/// The cache owns its tensors (they live outside every dispose scope); an update disposes the pair it replaces, and
/// <see cref="Dispose"/> the rest, so a decode loop holds one copy of the past at a time.
/// </remarks>
public sealed class KeyValueCache : IDisposable
{
    private readonly (Tensor Key, Tensor Value)?[] _layers;
    private bool _disposed;

    /// <summary>An empty cache for a model of <paramref name="layerCount"/> decoder layers.</summary>
    public KeyValueCache(int layerCount)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(layerCount, 1);
        _layers = new (Tensor, Tensor)?[layerCount];
    }

    /// <summary>The number of decoder layers the cache serves.</summary>
    public int LayerCount => _layers.Length;

    /// <summary>The number of cached positions (past_sequence), 0 when empty: layer 0's length, as Hugging Face's <c>get_seq_length()</c>.</summary>
    public long Length => _layers[0]?.Key.shape[2] ?? 0;

    /// <summary>Layer <paramref name="layer"/>'s cached key and value, or null before its first update.</summary>
    public (Tensor Key, Tensor Value)? this[int layer] => _layers[layer];

    /// <summary>
    /// Appends <paramref name="key"/> and <paramref name="value"/> [batch, kv_heads, new, d] to layer
    /// <paramref name="layer"/>'s cache and returns the whole cached key and value [batch, kv_heads, past + new, d].
    /// The returned tensors belong to the cache (valid until the next update of that layer).
    /// </summary>
    internal (Tensor Key, Tensor Value) Update(int layer, Tensor key, Tensor value)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var past = _layers[layer];
        if (past is { } p && (p.Key.shape[0] != key.shape[0] || p.Key.shape[1] != key.shape[1] || p.Key.shape[3] != key.shape[3]))
        {
            throw ModelThrow.Misuse(nameof(key), $"layer {layer.ToString(CultureInfo.InvariantCulture)} of the cache",
                ModelThrow.Shape(key.shape), $"[{p.Key.shape[0]}, {p.Key.shape[1]}, new, {p.Key.shape[3]}] like the cached keys {ModelThrow.Shape(p.Key.shape)}");
        }
        // alias(): a handle of the cache's own, so the caller's dispose scope can free its handle of the same tensor.
        var keys = (past is { } k ? cat([k.Key, key], 2) : key.alias()).DetachFromDisposeScope();
        var values = (past is { } v ? cat([v.Value, value], 2) : value.alias()).DetachFromDisposeScope();
        if (past is { } old)
        {
            old.Key.Dispose();
            old.Value.Dispose();
        }
        _layers[layer] = (keys, values);
        return (keys, values);
    }

    /// <summary>Frees every cached tensor.</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }
        _disposed = true;
        foreach (var pair in _layers)
        {
            pair?.Key.Dispose();
            pair?.Value.Dispose();
        }
        Array.Clear(_layers);
    }
}
