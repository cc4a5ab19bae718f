using OnnxLora.Core;
using OnnxLora.Core.Onnx;
using OnnxLora.Models.Onnx.Internals;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace OnnxLora.Models.Onnx;

/// <summary>
/// Where a module emits its ONNX nodes: the graph builder, the export choices, and the module's path
/// (Hugging Face module path, e.g. <c>model.layers.0.self_attn.q_proj</c>). Node names follow the
/// path as PyTorch's exporter does (<c>/model/layers.0/self_attn/q_proj/MatMul</c>); parameter
/// initializers carry the Hugging Face parameter name. Child contexts share the builder and caches.
/// </summary>
/// <remarks>
/// Weight layout: a Linear's weight W [out, in] is stored transposed, as Wᵀ [in, out], under its
/// Hugging Face name (<c>…q_proj.weight</c>), so the graph computes <c>MatMul(x, Wᵀ) + b</c>.
/// Embeddings keep [num, dim] for Gather. See <see cref="Linear"/> and the LoRA layers for adapter names.
/// </remarks>
public sealed partial class OnnxEmitContext
{
    private readonly SharedState _shared;
    private readonly string[] _segments;

    /// <summary>
    /// A root context (empty path) over <paramref name="builder"/>. With <paramref name="weights"/>, parameter
    /// data comes from that store (the modules may then hold no data: meta device) and is written when the
    /// model is saved; without, from the parameters themselves.
    /// </summary>
    public OnnxEmitContext(OnnxGraphBuilder builder, OnnxEmitOptions? options = null, OnnxWeightStore? weights = null)
        : this(new SharedState(builder ?? throw new ArgumentNullException(nameof(builder)), options ?? new OnnxEmitOptions(), weights), [])
    {
    }

    private OnnxEmitContext(SharedState shared, string[] segments)
    {
        _shared = shared;
        _segments = segments;
    }

    /// <summary>The builder every context of this export writes to.</summary>
    public OnnxGraphBuilder Builder => _shared.Builder;

    /// <summary>The export choices.</summary>
    public OnnxEmitOptions Options => _shared.Options;

    /// <summary>How LoRA layers are emitted.</summary>
    public OnnxExportMode Mode => _shared.Options.Mode;

    /// <summary>The graph's default-domain opset.</summary>
    public int Opset => _shared.Builder.Opset;

    /// <summary>The element type weights are stored in and the graph computes in (F32 or F16).</summary>
    public DType ComputeType => _shared.Options.WeightType;

    /// <summary>This module's Hugging Face path ("" at the root).</summary>
    public string Path => string.Join('.', _segments);

    /// <summary>A context for the child registered as <paramref name="name"/> (a name like "layers.0" is one step).</summary>
    public OnnxEmitContext Child(string name)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        return new OnnxEmitContext(_shared, [.. _segments, name]);
    }

    /// <summary>The Hugging Face name of this module's parameter <paramref name="leaf"/> ("model.norm" + "weight" → "model.norm.weight").</summary>
    public string ParameterName(string leaf) => _segments.Length == 0 ? leaf : Path + "." + leaf;

    /// <summary>The PEFT adapter key of this module's <paramref name="leaf"/>: "base_model.model.&lt;path&gt;.&lt;leaf&gt;".</summary>
    public string PeftName(string leaf) => Core.Peft.PeftAdapter.KeyPrefix + ParameterName(leaf);

    /// <summary>A node name under this module: "/model/layers.0/mlp/" + <paramref name="op"/>.</summary>
    public string NodeName(string op) => "/" + string.Concat(_segments.Select(s => s + "/")) + op;

    /// <summary>
    /// Emits <paramref name="module"/>, registered under <paramref name="childName"/>, on
    /// <paramref name="input"/>: an <see cref="IOnnxExportable"/> emits itself; Linear, Embedding,
    /// LayerNorm and Dropout are built in. Anything else is an error naming its path and type.
    /// </summary>
    /// <exception cref="OnnxLoraException">The module type has no ONNX emission (bad input).</exception>
    public string Emit(nn.Module<Tensor, Tensor> module, string childName, string input)
    {
        ArgumentNullException.ThrowIfNull(module);
        var child = Child(childName);
        return module switch
        {
            IOnnxExportable exportable => exportable.EmitOnnx(child, input),
            Linear linear => child.Linear(input, linear.weight!, linear.bias),
            Embedding embedding => child.Embedding(input, embedding.weight!),
            LayerNorm norm => child.LayerNorm(input, norm.weight, norm.bias, norm.eps),
            Dropout => input,
            _ => throw OnnxEmitThrow.UnknownModule(child.Path, module.GetType()),
        };
    }

    /// <summary>The error for a module of a type the exporter cannot emit, naming its path and type.</summary>
    public OnnxLoraException UnknownModule(nn.Module module) => OnnxEmitThrow.UnknownModule(Path, module.GetType());

    /// <summary>
    /// A value computed once per graph and shared (rotary tables, attention masks): returns the
    /// cached value for <paramref name="key"/>, or emits it with <paramref name="emit"/>.
    /// </summary>
    public string Shared(string key, Func<string> emit)
    {
        if (_shared.Values.TryGetValue(key, out string? value))
        {
            return value;
        }
        value = emit();
        _shared.Values.Add(key, value);
        return value;
    }

    private sealed class SharedState(OnnxGraphBuilder builder, OnnxEmitOptions options, OnnxWeightStore? weights)
    {
        public OnnxGraphBuilder Builder { get; } = builder;

        public OnnxEmitOptions Options { get; } = options;

        /// <summary>Where parameter data is stored, when the modules do not hold it.</summary>
        public OnnxWeightStore? Weights { get; } = weights;

        public Dictionary<string, string> Values { get; } = new(StringComparer.Ordinal);

        /// <summary>Initializers made from model parameters, by (storage key, transposed).</summary>
        public Dictionary<(string Storage, bool Transposed), string> Emitted { get; } = [];
    }

}
