using Onnx;

namespace OnnxLora.Core.Onnx;

public static partial class OnnxAdapterFile
{
    /// <summary>
    /// Checks that every parameter of <paramref name="adapter"/> feeds a graph input of <paramref name="graph"/>
    /// with the same element type, the same number of dims and the same size wherever the input's dim is fixed
    /// (the rank dim is symbolic). ONNX Runtime would otherwise fail at the first run, naming neither file.
    /// </summary>
    /// <param name="adapter">The adapter's contents.</param>
    /// <param name="adapterFile">The adapter file, named in errors.</param>
    /// <param name="graph">The adapter-ready graph.</param>
    /// <param name="modelFile">The model file, named in errors.</param>
    /// <exception cref="OnnxLoraException">Bad input: a parameter names no graph input, or its type or shape does not fit
    /// (the message names both files and the parameter).</exception>
    public static void CheckFits(OnnxAdapter adapter, string adapterFile, GraphProto graph, string modelFile)
    {
        ArgumentNullException.ThrowIfNull(adapter);
        ArgumentNullException.ThrowIfNull(graph);
        var inputs = graph.Input.ToDictionary(i => i.Name, StringComparer.Ordinal);
        foreach (var p in adapter.Parameters)
        {
            string what = $"parameter '{p.Name}' (for {modelFile})";
            if (!inputs.TryGetValue(p.Name, out var input))
            {
                throw OnnxLoraException.Invalid(adapterFile, what, "no graph input of that name",
                    "the name of one of the model's LoRA inputs (export the model with --mode adapters from a base that has these modules)");
            }
            var type = input.Type?.TensorType;
            if (type is null || !OnnxTensors.TryFromOnnx(type.ElemType, out var dtype) || dtype != p.DType)
            {
                throw OnnxLoraException.Invalid(adapterFile, what, p.DType.ToString(),
                    $"the input's element type ({OnnxTensors.DataTypeName(type?.ElemType ?? 0)})");
            }
            var dims = type.Shape?.Dim;
            if (dims is null || dims.Count != p.Shape.Count
                || dims.Zip(p.Shape).Any(x => x.First.HasDimValue && x.First.DimValue != x.Second))
            {
                string expected = dims is null ? "?" : string.Join(", ", dims.Select(d => d.HasDimValue ? d.DimValue.ToString(System.Globalization.CultureInfo.InvariantCulture) : d.DimParam));
                throw OnnxLoraException.Invalid(adapterFile, what, $"shape [{string.Join(", ", p.Shape)}]", $"the input's shape [{expected}]");
            }
        }
    }
}
