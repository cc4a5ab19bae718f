namespace OnnxLora.Validate;

/// <summary>
/// Computes the outputs of an eager (framework) model for the validation inputs: output name → values, flattened
/// row-major, one value per element of the ONNX output of the same name. Outputs it leaves out are not compared.
/// </summary>
public delegate IReadOnlyDictionary<string, float[]> EagerReference(IReadOnlyDictionary<string, InputTensor> inputs);

/// <summary>
/// The models to validate: the merged model is compared against the unmerged model (LoRA branches as separate nodes)
/// and the eager reference (gated), and against the base model (reported, not gated); latency is measured for every
/// ONNX model. At least one of <see cref="UnmergedPath"/>, <see cref="EagerReference"/> and
/// <see cref="AdapterModelPath"/> (with <see cref="ActiveAdapterPath"/>) is required.
/// </summary>
/// <param name="MergedPath">The merged ONNX model (the candidate).</param>
/// <param name="UnmergedPath">The ONNX model with the adapter as separate nodes, or null.</param>
public sealed record ValidationRequest(string MergedPath, string? UnmergedPath)
{
    /// <summary>The base ONNX model without the adapter; enables the merged/base latency ratio. Optional.</summary>
    public string? BasePath { get; init; }

    /// <summary>An eager reference the merged model is compared against. Optional.</summary>
    public EagerReference? EagerReference { get; init; }

    /// <summary>
    /// The adapter-ready ONNX model (exported with LoRA factors as inputs); with <see cref="ActiveAdapterPath"/>, run as the
    /// <see cref="ModelRole.Adapter"/> reference: the merged model must equal it with that adapter active (gated like the
    /// unmerged model). Optional; both or neither.
    /// </summary>
    public string? AdapterModelPath { get; init; }

    /// <summary>The ONNX Runtime adapter file (<c>.onnx_adapter</c>) activated on <see cref="AdapterModelPath"/> for every run.</summary>
    public string? ActiveAdapterPath { get; init; }
}
