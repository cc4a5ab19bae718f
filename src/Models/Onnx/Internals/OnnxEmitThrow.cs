using OnnxLora.Core;

namespace OnnxLora.Models.Onnx.Internals;

/// <summary>
/// ONNX emission errors; messages name the module path and type. A model or module the exporter cannot
/// emit is bad input (<see cref="OnnxLoraException"/>); emission code called wrongly is a bug (.NET exceptions).
/// </summary>
internal static class OnnxEmitThrow
{
    public static OnnxLoraException UnknownModule(string path, Type type) =>
        OnnxLoraException.Invalid(path.Length == 0 ? "<root>" : path, $"module type {type.FullName} has no ONNX emission; "
            + $"implement {nameof(IOnnxExportable)} on it or use a supported layer (Linear, Embedding, LayerNorm, Dropout, the LoRA wrappers).");

    /// <summary>A module or tensor of the user's model that the ONNX export does not support.</summary>
    public static OnnxLoraException Unsupported(string where, string message) => OnnxLoraException.Invalid(where, message);

    public static ArgumentException Argument(string paramName, string message) => new(message, paramName);
}
