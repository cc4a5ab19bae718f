namespace OnnxLora.Models.Onnx;

/// <summary>
/// A module that emits its own ONNX nodes. Any one-input, one-output module placed in a model (a
/// projection, an adapter wrapper, a user's own layer) can take part in export by implementing it.
/// </summary>
public interface IOnnxExportable
{
    /// <summary>
    /// Emits this module's forward for the value named <paramref name="input"/> and returns the name
    /// of its output value. <paramref name="context"/> is already scoped to this module's path, so
    /// <see cref="OnnxEmitContext.ParameterName"/> gives Hugging Face names for its parameters.
    /// </summary>
    string EmitOnnx(OnnxEmitContext context, string input);
}

/// <summary>A whole model that can be exported: it declares the graph inputs and outputs and emits everything between.</summary>
public interface IOnnxExportableModel
{
    /// <summary>Names the graph's inputs, emits the forward and declares the outputs on <paramref name="context"/>'s builder.</summary>
    void EmitOnnxGraph(OnnxEmitContext context);
}

/// <summary>
/// A decoder whose graph can carry a key/value cache (<see cref="OnnxEmitOptions.UsePast"/>, Optimum's task
/// <c>text-generation-with-past</c>). Exporting any other model with past is refused.
/// </summary>
public interface IOnnxExportableDecoder : IOnnxExportableModel
{
    /// <summary>Decoder layers: one past/present key and value pair each.</summary>
    int LayerCount { get; }

    /// <summary>Key/value heads per layer (not repeated for grouped-query attention).</summary>
    int KeyValueHeadCount { get; }

    /// <summary>Size of one attention head.</summary>
    int HeadSize { get; }
}
