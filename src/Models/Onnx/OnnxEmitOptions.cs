using OnnxLora.Core;

namespace OnnxLora.Models.Onnx;

/// <summary>What an <see cref="OnnxEmitContext"/> emits. Defaults: base mode, fp32, positions 0..seq−1.</summary>
public sealed record OnnxEmitOptions
{
    /// <summary>How LoRA layers appear (default <see cref="OnnxExportMode.Base"/>).</summary>
    public OnnxExportMode Mode { get; init; } = OnnxExportMode.Base;

    /// <summary>
    /// Weight and compute element type: <see cref="DType.F32"/> (default) or <see cref="DType.F16"/> (fp16
    /// weights and computation; norms, softmax and masks computed in fp32 and cast).
    /// </summary>
    public DType WeightType { get; init; } = DType.F32;

    /// <summary>
    /// Decoders: declare a <c>position_ids</c> input (int64 [batch, sequence]) instead of computing
    /// positions 0..sequence−1 in the graph (default false).
    /// </summary>
    public bool PositionIdsInput { get; init; }

    /// <summary>
    /// Encoders: declare a <c>token_type_ids</c> input (int64 [batch, sequence]) instead of treating
    /// every token as type 0 (default false).
    /// </summary>
    public bool TokenTypeIdsInput { get; init; }

    /// <summary>
    /// Decoders: emit the graph with a key/value cache (Optimum's <c>use_past</c>, task
    /// <c>text-generation-with-past</c>): <c>past_key_values.{i}.key</c> / <c>.value</c> inputs,
    /// <c>present.{i}.key</c> / <c>.value</c> outputs, <c>attention_mask</c> over the total
    /// (past + new) sequence and a <c>position_ids</c> input (default false).
    /// </summary>
    public bool UsePast { get; init; }
}
