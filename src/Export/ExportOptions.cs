using OnnxLora.Core;
using OnnxLora.Core.Onnx;
using OnnxLora.Models.Onnx;

namespace OnnxLora.Export;

/// <summary>Choices for <see cref="OnnxExporter"/>. Change with <c>with</c>; the defaults are documented per property.</summary>
public sealed record ExportOptions
{
    /// <summary>How LoRA layers appear (default <see cref="OnnxExportMode.Merged"/>: one folded weight per layer).</summary>
    public OnnxExportMode Mode { get; init; } = OnnxExportMode.Merged;

    /// <summary>Default-domain opset, 17..21 (default 17). The IR version follows it.</summary>
    public int Opset { get; init; } = 17;

    /// <summary>Weight and compute type: <see cref="DType.F32"/> (default) or <see cref="DType.F16"/>.</summary>
    public DType WeightType { get; init; } = DType.F32;

    /// <summary>External data policy (default <see cref="OnnxExternalData.Auto"/>: only above 2 GiB).</summary>
    public OnnxExternalData ExternalData { get; init; } = OnnxExternalData.Auto;

    /// <summary>Decoders: add a <c>position_ids</c> input instead of positions 0..sequence−1 (default false).</summary>
    public bool PositionIdsInput { get; init; }

    /// <summary>Encoders: add a <c>token_type_ids</c> input instead of all-zero types (default false).</summary>
    public bool TokenTypeIdsInput { get; init; }

    /// <summary>
    /// Decoders: export with a key/value cache, Optimum's task <c>text-generation-with-past</c> (default false; see
    /// <see cref="OnnxEmitOptions.UsePast"/> for the inputs and outputs it adds).
    /// </summary>
    public bool UsePast { get; init; }

    /// <summary>Adapter name written to the metadata (default none).</summary>
    public string? AdapterName { get; init; }

    /// <summary>Base checkpoint files whose SHA-256 goes into the metadata (default none).</summary>
    public IReadOnlyList<string> BaseModelFiles { get; init; } = [];

    /// <summary>Adapter files whose SHA-256 goes into the metadata (default none).</summary>
    public IReadOnlyList<string> AdapterFiles { get; init; } = [];

    /// <summary>Replace existing output files (default false).</summary>
    public bool Overwrite { get; init; }

    /// <summary>The defaults.</summary>
    public static ExportOptions Default { get; } = new();
}

/// <summary>What an export wrote.</summary>
/// <param name="ModelPath">The .onnx file.</param>
/// <param name="ExternalDataPath">The external data file, or null when the weights are inside the .onnx file.</param>
/// <param name="NodeCount">Nodes in the graph.</param>
/// <param name="InitializerCount">Initializers in the graph.</param>
/// <param name="LoraLayerCount">LoRA layers found in the model.</param>
public sealed record ExportResult(string ModelPath, string? ExternalDataPath, int NodeCount, int InitializerCount, int LoraLayerCount)
{
    /// <summary>What the merge plan warned about (several adapters merged), else empty.</summary>
    public IReadOnlyList<string> Warnings { get; init; } = [];

    /// <summary>With <see cref="OnnxExportMode.Adapters"/>: the ONNX Runtime adapter files written beside the model.</summary>
    public IReadOnlyList<string> AdapterFiles { get; init; } = [];
}
