using System.Globalization;
using Onnx;
using OnnxLora.Core.Internals;

namespace OnnxLora.Core.Onnx.Internals;

/// <summary>Structural checks on a parsed model: versions, initializers and node references.</summary>
internal static class ModelValidator
{
    /// <summary>The highest IR version accepted when reading (ONNX 1.19 writes 11; one more is tolerated).</summary>
    public const long MaxIrVersion = 12;

    public static void Validate(string file, ModelProto model, bool checkReferences)
    {
        if (model.IrVersion < 3 || model.IrVersion > MaxIrVersion)
        {
            throw FormatThrow.Invalid(file, "ir_version", model.IrVersion.ToString(CultureInfo.InvariantCulture), $"3..{MaxIrVersion}");
        }
        if (model.OpsetImport.Count == 0)
        {
            throw FormatThrow.Invalid(file, "opset_import", "none", "at least one operator set");
        }
        foreach (var opset in model.OpsetImport)
        {
            if (opset.Version < 1)
            {
                throw FormatThrow.Invalid(file, $"opset_import '{opset.Domain}' version", opset.Version.ToString(CultureInfo.InvariantCulture), "a positive version");
            }
        }
        if (model.Graph is null)
        {
            throw FormatThrow.Invalid(file, "graph", "none", "a graph");
        }
        ValidateGraph(file, model.Graph, outerScope: null, checkReferences);
    }

    private static void ValidateGraph(string file, GraphProto graph, HashSet<string>? outerScope, bool checkReferences)
    {
        var scope = outerScope is null ? new HashSet<string>(StringComparer.Ordinal) : new HashSet<string>(outerScope, StringComparer.Ordinal);
        var initializerNames = new HashSet<string>(StringComparer.Ordinal);
        foreach (var tensor in graph.Initializer)
        {
            if (string.IsNullOrEmpty(tensor.Name))
            {
                throw FormatThrow.Invalid(file, $"graph '{graph.Name}' initializer name", "an empty name", "a unique name");
            }
            if (!initializerNames.Add(tensor.Name))
            {
                throw FormatThrow.Invalid(file, $"initializer '{tensor.Name}'", "a second initializer with this name", "unique initializer names");
            }
            ValidateTensor(file, tensor);
            scope.Add(tensor.Name);
        }
        foreach (var input in graph.Input)
        {
            scope.Add(input.Name);
        }
        foreach (var node in graph.Node)
        {
            foreach (var attribute in node.Attribute)
            {
                if (attribute.T is not null)
                {
                    ValidateTensor(file, attribute.T);
                }
                foreach (var t in attribute.Tensors)
                {
                    ValidateTensor(file, t);
                }
                if (attribute.G is not null)
                {
                    ValidateGraph(file, attribute.G, scope, checkReferences);
                }
                foreach (var g in attribute.Graphs)
                {
                    ValidateGraph(file, g, scope, checkReferences);
                }
            }
            if (checkReferences)
            {
                foreach (string input in node.Input)
                {
                    if (input.Length != 0 && !scope.Contains(input))
                    {
                        throw FormatThrow.Invalid(file, $"node '{node.Name}' ({node.OpType}) input '{input}'", "a name nothing defines",
                            "a graph input, an initializer or an earlier node's output");
                    }
                }
            }
            foreach (string output in node.Output)
            {
                if (output.Length != 0)
                {
                    scope.Add(output);
                }
            }
        }
        if (checkReferences)
        {
            foreach (var output in graph.Output)
            {
                if (!scope.Contains(output.Name))
                {
                    throw FormatThrow.Invalid(file, $"graph output '{output.Name}'", "a name nothing defines", "a graph input, an initializer or a node output");
                }
            }
        }
    }

    private static void ValidateTensor(string file, TensorProto tensor)
    {
        long count;
        try
        {
            count = OnnxTensors.ElementCount(tensor);
        }
        catch (OnnxLoraException)
        {
            throw FormatThrow.Invalid(file, $"tensor '{tensor.Name}' dims", $"[{string.Join(", ", tensor.Dims)}]", "non-negative dims with an element count that fits in 64 bits");
        }
        if (tensor.DataType == 0)
        {
            throw FormatThrow.Invalid(file, $"tensor '{tensor.Name}' data_type", "UNDEFINED", "an element type");
        }
        if (!Enum.IsDefined((TensorProto.Types.DataType)tensor.DataType))
        {
            // A value no ONNX version defines: its element size is unknown, so the data cannot be checked or copied faithfully.
            throw FormatThrow.Invalid(file, $"tensor '{tensor.Name}' data_type", tensor.DataType.ToString(CultureInfo.InvariantCulture),
                $"an ONNX TensorProto.DataType (1..{Enum.GetValues<TensorProto.Types.DataType>().Max(v => (int)v).ToString(CultureInfo.InvariantCulture)})");
        }
        if (OnnxTensors.IsExternal(tensor) || tensor.RawData.IsEmpty)
        {
            return;
        }
        if (OnnxTensors.TryFromOnnx(tensor.DataType, out var dtype))
        {
            // count ≤ raw length here, so the product cannot overflow.
            if (count > tensor.RawData.Length || count * dtype.SizeOf() != tensor.RawData.Length)
            {
                throw FormatThrow.Invalid(file, $"tensor '{tensor.Name}' raw_data", $"{tensor.RawData.Length} bytes",
                    $"{(count > tensor.RawData.Length ? "more" : (count * dtype.SizeOf()).ToString(CultureInfo.InvariantCulture))} bytes for {dtype} [{string.Join(", ", tensor.Dims)}]");
            }
        }
    }

    /// <summary>Every tensor stored in the graph: initializers and tensor attributes, subgraphs included.</summary>
    public static IEnumerable<TensorProto> AllTensors(GraphProto graph)
    {
        foreach (var tensor in graph.Initializer)
        {
            yield return tensor;
        }
        foreach (var node in graph.Node)
        {
            foreach (var attribute in node.Attribute)
            {
                if (attribute.T is not null)
                {
                    yield return attribute.T;
                }
                foreach (var t in attribute.Tensors)
                {
                    yield return t;
                }
                if (attribute.G is not null)
                {
                    foreach (var t in AllTensors(attribute.G))
                    {
                        yield return t;
                    }
                }
                foreach (var g in attribute.Graphs)
                {
                    foreach (var t in AllTensors(g))
                    {
                        yield return t;
                    }
                }
            }
        }
    }
}
