using System.Runtime.InteropServices;
using Onnx;
using OnnxLora.Core.Onnx.Internals;

namespace OnnxLora.Core.Onnx;

/// <summary>
/// Builds one ONNX graph and its model. Values are named as given (an explicit name used twice is an
/// error) or made unique from a hint; nodes keep the order they were added in, so the same calls give
/// a byte-identical model (nothing time- or machine-dependent is written). A builder builds once.
/// </summary>
public sealed class OnnxGraphBuilder
{
    private readonly GraphProto _graph;
    private readonly HashSet<string> _values = new(StringComparer.Ordinal);
    private readonly HashSet<string> _nodeNames = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _constants = new(StringComparer.Ordinal);
    private readonly List<OperatorSetIdProto> _extraOpsets = [];
    private readonly List<StringStringEntryProto> _metadata = [];
    private readonly Dictionary<string, OnnxTensorSource> _deferred = new(StringComparer.Ordinal);
    private bool _built;

    /// <summary>Starts a graph for the default ONNX domain at <paramref name="opset"/>.</summary>
    public OnnxGraphBuilder(int opset = 17, string graphName = "main_graph")
    {
        _ = OnnxVersions.IrVersionForOpset(opset);
        ArgumentException.ThrowIfNullOrEmpty(graphName);
        Opset = opset;
        _graph = new GraphProto { Name = graphName };
    }

    /// <summary>The default-domain opset the graph targets.</summary>
    public int Opset { get; }

    /// <summary>The IR version the model will declare (from <see cref="OnnxVersions.IrVersionForOpset"/>).</summary>
    public long IrVersion => OnnxVersions.IrVersionForOpset(Opset);

    /// <summary>Number of nodes added so far.</summary>
    public int NodeCount => _graph.Node.Count;

    /// <summary>Initializers added so far, in order.</summary>
    public IReadOnlyList<TensorProto> Initializers => _graph.Initializer;

    /// <summary>
    /// The data of initializers added from a <see cref="OnnxTensorSource"/>, by name: their tensors in the built
    /// model carry name, type and dims but no data until <see cref="OnnxFile.Save(ModelProto, string, OnnxSaveOptions?, IReadOnlyDictionary{string, OnnxTensorSource}?)"/>
    /// writes them (or <see cref="OnnxFile.LoadDeferredData"/> puts them in memory).
    /// </summary>
    public IReadOnlyDictionary<string, OnnxTensorSource> DeferredData => _deferred;

    /// <summary>True when a value (input, initializer or node output) of this name exists.</summary>
    public bool HasValue(string name) => _values.Contains(name);

    /// <summary>A value name not used yet (not reserved until a value takes it): <paramref name="hint"/> itself, or hint_1, hint_2, ...</summary>
    public string UniqueName(string hint)
    {
        ArgumentException.ThrowIfNullOrEmpty(hint);
        string name = hint;
        for (int i = 1; _values.Contains(name); i++)
        {
            name = $"{hint}_{i}";
        }
        return name;
    }

    /// <summary>Declares a graph input of the given element type and dims (fixed sizes or symbolic names).</summary>
    public string AddInput(string name, DType elemType, params ReadOnlySpan<OnnxDim> dims)
    {
        Claim(name);
        _graph.Input.Add(ValueInfo(name, elemType, dims));
        return name;
    }

    /// <summary>
    /// Declares a graph input whose value defaults to <paramref name="defaultValue"/> when a run does not feed
    /// it (an initializer of the same name: what ONNX Runtime's LoRA adapters override, per onnxruntime's
    /// lora tests). The input is declared with <paramref name="dims"/>, which may be symbolic where the
    /// default's are fixed.
    /// </summary>
    public string AddInputWithDefault(TensorProto defaultValue, params ReadOnlySpan<OnnxDim> dims)
    {
        ArgumentNullException.ThrowIfNull(defaultValue);
        Claim(defaultValue.Name);
        _graph.Input.Add(ValueInfo(defaultValue.Name, OnnxTensors.TryFromOnnx(defaultValue.DataType, out var dtype)
            ? dtype
            : throw new ArgumentException($"'{defaultValue.Name}': unsupported data type {defaultValue.DataType}.", nameof(defaultValue)), dims));
        _graph.Initializer.Add(defaultValue);
        return defaultValue.Name;
    }

    /// <summary>Declares a graph output; a value of that name must exist when the model is built.</summary>
    public string AddOutput(string name, DType elemType, params ReadOnlySpan<OnnxDim> dims)
    {
        ThrowIfBuilt();
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (_graph.Output.Any(o => o.Name == name))
        {
            throw new ArgumentException($"graph output '{name}' is declared twice.", nameof(name));
        }
        _graph.Output.Add(ValueInfo(name, elemType, dims));
        return name;
    }

    /// <summary>Adds an initializer with raw little-endian bytes (copied).</summary>
    public string AddInitializer(string name, DType dtype, ReadOnlySpan<long> shape, ReadOnlySpan<byte> data) =>
        AddInitializer(OnnxTensors.Create(name, dtype, shape, data));

    /// <summary>Adds a floating-point initializer from fp32 values, converted to <paramref name="dtype"/>.</summary>
    public string AddInitializer(string name, DType dtype, ReadOnlySpan<long> shape, ReadOnlySpan<float> values) =>
        AddInitializer(OnnxTensors.Create(name, dtype, shape, values));

    /// <summary>Adds an initializer that wraps <paramref name="data"/> without copying; the memory must not change afterwards.</summary>
    public string AddInitializerWrapped(string name, DType dtype, ReadOnlySpan<long> shape, ReadOnlyMemory<byte> data) =>
        AddInitializer(OnnxTensors.CreateWrapped(name, dtype, shape, data));

    /// <summary>
    /// Adds an initializer whose data is produced when the model is written (see <see cref="DeferredData"/>), so
    /// the builder never holds it: the way a model larger than memory, or with a tensor over 2 GiB, is exported.
    /// </summary>
    public string AddInitializer(string name, OnnxTensorSource source)
    {
        ArgumentNullException.ThrowIfNull(source);
        var tensor = new TensorProto { Name = name, DataType = (int)source.DType.ToOnnx() };
        tensor.Dims.Add(source.Shape);
        AddInitializer(tensor);
        _deferred.Add(name, source);
        return name;
    }

    /// <summary>Adds a prepared tensor as an initializer.</summary>
    public string AddInitializer(TensorProto tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        Claim(tensor.Name);
        _graph.Initializer.Add(tensor);
        return tensor.Name;
    }

    /// <summary>
    /// An int64 constant (as an initializer); identical constants share one initializer, named from
    /// <paramref name="hint"/> when first added.
    /// </summary>
    public string AddConstant(string hint, ReadOnlySpan<long> shape, ReadOnlySpan<long> values) =>
        AddConstant(hint, DType.I64, shape, MemoryMarshal.AsBytes(values));

    /// <summary>A floating-point constant of <paramref name="dtype"/> from fp32 values; shared as above.</summary>
    public string AddConstant(string hint, DType dtype, ReadOnlySpan<long> shape, ReadOnlySpan<float> values)
    {
        var tensor = OnnxTensors.Create("c", dtype, shape, values);
        return AddConstant(hint, dtype, shape, tensor.RawData.Span);
    }

    /// <summary>A constant from raw bytes; shared as above.</summary>
    public string AddConstant(string hint, DType dtype, ReadOnlySpan<long> shape, ReadOnlySpan<byte> data)
    {
        ThrowIfBuilt();
        string key = $"{dtype}|{string.Join(",", shape.ToArray())}|{Convert.ToHexString(data)}";
        if (_constants.TryGetValue(key, out string? existing))
        {
            return existing;
        }
        string name = UniqueName(hint);
        AddInitializer(name, dtype, shape, data);
        _constants.Add(key, name);
        return name;
    }

    /// <summary>Adds a node with explicit output names (each must be new) and returns it.</summary>
    public NodeProto AddNode(string opType, IReadOnlyList<string> inputs, IReadOnlyList<string> outputs, string? name = null,
        params AttributeProto[] attributes)
    {
        ThrowIfBuilt();
        ArgumentException.ThrowIfNullOrEmpty(opType);
        ArgumentNullException.ThrowIfNull(inputs);
        ArgumentNullException.ThrowIfNull(outputs);
        foreach (string input in inputs)
        {
            if (input.Length != 0 && !_values.Contains(input))
            {
                throw new ArgumentException($"node '{name ?? opType}' ({opType}): input '{input}' is not defined yet.", nameof(inputs));
            }
        }
        foreach (string output in outputs)
        {
            Claim(output);
        }
        var node = new NodeProto { OpType = opType, Name = Unique(name ?? "/" + opType, _nodeNames) };
        node.Input.Add(inputs);
        node.Output.Add(outputs);
        foreach (var attribute in attributes.OrderBy(a => a.Name, StringComparer.Ordinal))
        {
            node.Attribute.Add(attribute);
        }
        _graph.Node.Add(node);
        return node;
    }

    /// <summary>Adds a node whose outputs are named "&lt;node name&gt;_output_&lt;i&gt;" and returns those names.</summary>
    public IReadOnlyList<string> AddNode(string opType, IReadOnlyList<string> inputs, int outputCount, string? name = null,
        params AttributeProto[] attributes)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(outputCount, 1);
        string nodeName = Unique(name ?? "/" + opType, _nodeNames);
        var outputs = new string[outputCount];
        for (int i = 0; i < outputCount; i++)
        {
            outputs[i] = UniqueName($"{nodeName}_output_{i}");
        }
        _nodeNames.Remove(nodeName);
        AddNode(opType, inputs, outputs, nodeName, attributes);
        return outputs;
    }

    /// <summary>Adds a single-output node and returns its output name.</summary>
    public string AddNode(string opType, IReadOnlyList<string> inputs, string? name = null, params AttributeProto[] attributes) =>
        AddNode(opType, inputs, 1, name, attributes)[0];

    /// <summary>Imports an extra operator-set domain (e.g. "com.microsoft").</summary>
    public void AddOpsetImport(string domain, long version)
    {
        ThrowIfBuilt();
        ArgumentException.ThrowIfNullOrEmpty(domain);
        if (_extraOpsets.Any(o => o.Domain == domain))
        {
            throw new ArgumentException($"opset domain '{domain}' is imported twice.", nameof(domain));
        }
        _extraOpsets.Add(new OperatorSetIdProto { Domain = domain, Version = version });
    }

    /// <summary>Adds a model metadata entry (kept in the order added).</summary>
    public void AddMetadata(string key, string value)
    {
        ThrowIfBuilt();
        ArgumentException.ThrowIfNullOrEmpty(key);
        if (_metadata.Any(m => m.Key == key))
        {
            throw new ArgumentException($"metadata key '{key}' is set twice.", nameof(key));
        }
        _metadata.Add(new StringStringEntryProto { Key = key, Value = value ?? string.Empty });
    }

    /// <summary>Finishes the model: IR version from the opset, opset imports, producer, metadata, the graph.</summary>
    /// <exception cref="InvalidOperationException">A graph output names no value.</exception>
    public ModelProto Build(string producerName = "OnnxLora", string producerVersion = "")
    {
        ThrowIfBuilt();
        foreach (var output in _graph.Output)
        {
            if (!_values.Contains(output.Name))
            {
                throw new InvalidOperationException($"graph output '{output.Name}' names no input, initializer or node output.");
            }
        }
        _built = true;
        var model = new ModelProto
        {
            IrVersion = IrVersion,
            ProducerName = producerName,
            ProducerVersion = producerVersion,
            Graph = _graph,
        };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = string.Empty, Version = Opset });
        model.OpsetImport.Add(_extraOpsets);
        model.MetadataProps.Add(_metadata);
        ModelValidator.Validate("<built model>", model, checkReferences: true);
        return model;
    }

    private static ValueInfoProto ValueInfo(string name, DType elemType, ReadOnlySpan<OnnxDim> dims)
    {
        var shape = new TensorShapeProto();
        foreach (var dim in dims)
        {
            var d = new TensorShapeProto.Types.Dimension();
            if (dim.Param is not null)
            {
                d.DimParam = dim.Param;
            }
            else
            {
                d.DimValue = dim.Value ?? throw new ArgumentException($"value '{name}': a dimension has neither a size nor a name.", nameof(dims));
            }
            shape.Dim.Add(d);
        }
        var tensorType = new TypeProto.Types.Tensor { ElemType = (int)elemType.ToOnnx(), Shape = shape };
        return new ValueInfoProto { Name = name, Type = new TypeProto { TensorType = tensorType } };
    }

    private void Claim(string name)
    {
        ThrowIfBuilt();
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (!_values.Add(name))
        {
            throw new ArgumentException($"value name '{name}' is already used in this graph.", nameof(name));
        }
    }

    private static string Unique(string hint, HashSet<string> used)
    {
        ArgumentException.ThrowIfNullOrEmpty(hint);
        string name = hint;
        for (int i = 1; used.Contains(name); i++)
        {
            name = $"{hint}_{i}";
        }
        used.Add(name);
        return name;
    }

    private void ThrowIfBuilt()
    {
        if (_built)
        {
            throw new InvalidOperationException("the model was already built; start a new builder.");
        }
    }
}
