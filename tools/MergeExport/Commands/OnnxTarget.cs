using OnnxLora.Merge;

namespace OnnxLora.MergeExport.Commands;

/// <summary>Merging into an existing ONNX model (made by another tool).</summary>
internal static class OnnxTarget
{
    public static int Merge(CliContext context, string model, IReadOnlyList<WeightedAdapter> adapters, string output, MergeOptions options, string? baseCheckpoint)
    {
        _ = context;
        _ = adapters;
        _ = output;
        _ = options;
        _ = baseCheckpoint;
        throw new NotSupportedException($"{model}: merging into an existing ONNX model is not available in this build yet; merge into the safetensors checkpoint and export it instead.");
    }
}
