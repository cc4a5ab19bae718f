namespace OnnxLora.Models.Onnx.Internals;

/// <summary>The one place ONNX emission errors are raised; messages name the module path and type.</summary>
internal static class OnnxEmitThrow
{
    public static NotSupportedException UnknownModule(string path, Type type) =>
        new($"{(path.Length == 0 ? "<root>" : path)}: module type {type.FullName} has no ONNX emission; "
            + $"implement {nameof(IOnnxExportable)} on it or use a supported layer (Linear, Embedding, LayerNorm, Dropout, the LoRA wrappers).");

    public static ArgumentException Argument(string paramName, string message) => new(message, paramName);
}
