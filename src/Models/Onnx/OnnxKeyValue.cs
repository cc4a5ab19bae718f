namespace OnnxLora.Models.Onnx;

/// <summary>
/// The names of one decoder layer's cached key and value in a graph with past (Optimum's <c>use_past</c>):
/// each [batch, num_key_value_heads, sequence, head_dim] in the compute type, heads not repeated for
/// grouped-query attention.
/// </summary>
/// <param name="Key">The key value's name.</param>
/// <param name="Value">The value value's name.</param>
public sealed record OnnxKeyValue(string Key, string Value);
