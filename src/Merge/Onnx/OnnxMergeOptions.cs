using OnnxLora.Core.Onnx;

namespace OnnxLora.Merge.Onnx;

/// <summary>
/// Options of a merge into an existing ONNX model. Defaults: no base checkpoint (no content
/// matching), <see cref="MergeOptions.Default"/>, never overwrite, external data as the input had it.
/// </summary>
public sealed record OnnxMergeOptions
{
    /// <summary>
    /// A Hugging Face safetensors checkpoint folder holding the model's base weights (the one the ONNX
    /// model was exported from). When set, adapter modules that match no initializer by name or by
    /// node path are matched by tensor contents (the initializer equals W or Wᵀ). Default null.
    /// </summary>
    public string? BaseCheckpoint { get; init; }

    /// <summary>
    /// How adapters are combined, safe mode, and the dtype: an ONNX merge keeps each initializer's
    /// dtype (the graph is unchanged), so <see cref="MergeOptions.OutputDType"/> must be
    /// null (keep) or the dtype the merged initializers already have.
    /// </summary>
    public MergeOptions Merge { get; init; } = MergeOptions.Default;

    /// <summary>Replace an existing output model (and its data file). Default false.</summary>
    public bool Overwrite { get; init; }

    /// <summary>
    /// Where initializer data goes. Null (default): as the input had it — a data file next to the
    /// output when the input kept data externally (then merged streaming, in the input's data layout),
    /// otherwise only when the size requires it.
    /// </summary>
    public OnnxExternalData? ExternalData { get; init; }

    /// <summary>The defaults.</summary>
    public static OnnxMergeOptions Default { get; } = new();
}
