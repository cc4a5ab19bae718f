using Onnx;

namespace OnnxLora.Merge.Onnx.Internals;

/// <summary>How a weight initializer is read by a matrix op, in terms of its rows.</summary>
internal enum WeightRows
{
    /// <summary>Rows are output features ([out, in], Gemm transB = 1, Transpose → MatMul) or table rows (Gather).</summary>
    Out,

    /// <summary>Rows are input features ([in, out]: MatMul's B, Gemm transB = 0).</summary>
    In,
}

/// <summary>One way the graph reads an initializer as a weight.</summary>
internal readonly record struct WeightUse(WeightRows Rows, string Via);

/// <summary>An initializer read by a node whose name is a torch.onnx module path.</summary>
internal readonly record struct NodePathUse(string ModulePath, NodeProto Node, string Initializer, bool IsBias);

/// <summary>
/// The main graph's initializers and who reads them: forward (initializer → Cast/Identity/Transpose →
/// MatMul/Gemm/Gather, to learn the layout) and by node-name path ("/model/layers.0/mlp/up_proj/MatMul"
/// → "model.layers.0.mlp.up_proj").
/// </summary>
internal sealed class OnnxGraphIndex
{
    private const int MaxChain = 8;

    private readonly Dictionary<string, List<(NodeProto Node, int Input)>> _consumers = new(StringComparer.Ordinal);
    private readonly Dictionary<string, NodeProto> _producers = new(StringComparer.Ordinal);
    private readonly HashSet<string> _read = new(StringComparer.Ordinal);

    public OnnxGraphIndex(GraphProto graph)
    {
        Initializers = new Dictionary<string, TensorProto>(StringComparer.Ordinal);
        foreach (var t in graph.Initializer)
        {
            Initializers[t.Name] = t;
        }
        foreach (var node in graph.Node)
        {
            for (int i = 0; i < node.Input.Count; i++)
            {
                string input = node.Input[i];
                if (input.Length == 0)
                {
                    continue;
                }
                if (!_consumers.TryGetValue(input, out var list))
                {
                    list = [];
                    _consumers.Add(input, list);
                }
                list.Add((node, i));
            }
            foreach (string output in node.Output)
            {
                if (output.Length != 0)
                {
                    _producers[output] = node;
                }
            }
        }
        CollectReads(graph, _read, depth: 0);
        foreach (var output in graph.Output)
        {
            _read.Add(output.Name);
        }
        var uses = new List<NodePathUse>();
        foreach (var node in graph.Node)
        {
            string? path = ModulePathOf(node);
            if (path is null)
            {
                continue;
            }
            switch (node.OpType)
            {
                case "MatMul":
                    AddUse(uses, path, node, 1, isBias: false);
                    break;
                case "Gemm":
                    AddUse(uses, path, node, 1, isBias: false);
                    AddUse(uses, path, node, 2, isBias: true);
                    break;
                case "Gather":
                    AddUse(uses, path, node, 0, isBias: false);
                    break;
                case "Add":
                    AddUse(uses, path, node, 0, isBias: true);
                    AddUse(uses, path, node, 1, isBias: true);
                    break;
                default:
                    break;
            }
        }
        NodePathUses = uses;
        NodePaths = new PrefixNameIndex(uses.Select(u => u.ModulePath));
    }

    public Dictionary<string, TensorProto> Initializers { get; }

    /// <summary>Initializers read by MatMul/Gemm/Gather/Add nodes with path-style names.</summary>
    public IReadOnlyList<NodePathUse> NodePathUses { get; }

    /// <summary>The module paths of <see cref="NodePathUses"/>.</summary>
    public PrefixNameIndex NodePaths { get; }

    /// <summary>
    /// The module path a torch.onnx node name spells: "/model/layers.0/self_attn/q_proj/MatMul" →
    /// "model.layers.0.self_attn.q_proj" (leading '/' stripped, the op part dropped, '/' → '.'); null
    /// for names not in that form.
    /// </summary>
    public static string? ModulePathOf(NodeProto node)
    {
        string name = node.Name;
        if (name.Length < 2 || name[0] != '/')
        {
            return null;
        }
        var parts = name[1..].Split('/');
        if (parts.Length < 2 || parts.Any(p => p.Length == 0))
        {
            return null;
        }
        return string.Join('.', parts[..^1]);
    }

    /// <summary>
    /// The name torch.onnx gives a node of the module at <paramref name="modulePath"/>: the path's
    /// components joined by '/', an index staying dotted to its container, then the op:
    /// "model.layers.0.self_attn.q_proj" → "/model/layers.0/self_attn/q_proj/MatMul". The inverse of
    /// <see cref="ModulePathOf"/>.
    /// </summary>
    public static string NodeNameOf(string modulePath, string op)
    {
        var parts = new List<string>();
        foreach (string component in modulePath.Split('.'))
        {
            if (parts.Count > 0 && component.Length > 0 && component.All(char.IsAsciiDigit))
            {
                parts[^1] += "." + component;
            }
            else
            {
                parts.Add(component);
            }
        }
        return "/" + string.Join('/', parts) + "/" + op;
    }

    /// <summary>
    /// True when a node (of the graph or of a subgraph) reads the value or it is a graph output. An
    /// initializer nothing reads — a parameter an exporter left behind beside its folded copy — is
    /// never a merge target: changing it would change nothing.
    /// </summary>
    public bool IsRead(string value) => _read.Contains(value);

    private static void CollectReads(GraphProto graph, HashSet<string> read, int depth)
    {
        if (depth > MaxChain * 4)
        {
            return;
        }
        foreach (var node in graph.Node)
        {
            read.UnionWith(node.Input.Where(i => i.Length > 0));
            foreach (var attribute in node.Attribute)
            {
                if (attribute.G is { } g)
                {
                    CollectReads(g, read, depth + 1);
                }
                foreach (var sub in attribute.Graphs)
                {
                    CollectReads(sub, read, depth + 1);
                }
            }
        }
    }

    /// <summary>The initializer a value comes from through Transpose/Cast/Identity nodes, or null.</summary>
    public string? InitializerBehind(string value)
    {
        for (int i = 0; i < MaxChain && value.Length > 0; i++)
        {
            if (Initializers.ContainsKey(value))
            {
                return value;
            }
            if (!_producers.TryGetValue(value, out var node) || node.Input.Count == 0 || node.OpType is not ("Transpose" or "Cast" or "Identity"))
            {
                return null;
            }
            value = node.Input[0];
        }
        return null;
    }

    /// <summary>
    /// Every way the graph reads <paramref name="initializer"/> as a matrix weight, following
    /// Cast/Identity (unchanged) and 2-D Transpose (rows flipped) to MatMul (input B), Gemm (input B,
    /// transB) and Gather (data).
    /// </summary>
    public List<WeightUse> WeightUses(string initializer)
    {
        var uses = new List<WeightUse>();
        Walk(initializer, flipped: false, chain: "", depth: 0, uses);
        return uses;
    }

    private void Walk(string value, bool flipped, string chain, int depth, List<WeightUse> uses)
    {
        if (depth >= MaxChain || !_consumers.TryGetValue(value, out var consumers))
        {
            return;
        }
        foreach (var (node, input) in consumers)
        {
            string step = chain + node.OpType;
            switch (node.OpType)
            {
                case "Cast" or "Identity" when input == 0:
                    Walk(node.Output[0], flipped, step + " → ", depth + 1, uses);
                    break;
                case "Transpose" when input == 0 && IsMatrixTranspose(node):
                    Walk(node.Output[0], !flipped, step + " → ", depth + 1, uses);
                    break;
                case "MatMul" when input == 1:
                    uses.Add(new WeightUse(Flip(WeightRows.In, flipped), Describe(step, node)));
                    break;
                case "Gemm" when input == 1:
                    bool transB = node.Attribute.FirstOrDefault(a => a.Name == "transB")?.I is 1;
                    uses.Add(new WeightUse(Flip(transB ? WeightRows.Out : WeightRows.In, flipped), Describe(step + (transB ? " transB=1" : " transB=0"), node)));
                    break;
                case "Gather" when input == 0:
                    uses.Add(new WeightUse(Flip(WeightRows.Out, flipped), Describe(step, node)));
                    break;
                default:
                    break;
            }
        }
    }

    private static bool IsMatrixTranspose(NodeProto node)
    {
        var perm = node.Attribute.FirstOrDefault(a => a.Name == "perm");
        // No perm reverses the dims, which for a matrix is [1, 0].
        return perm is null || (perm.Ints.Count == 2 && perm.Ints[0] == 1 && perm.Ints[1] == 0);
    }

    private static WeightRows Flip(WeightRows rows, bool flipped) => !flipped ? rows : rows == WeightRows.In ? WeightRows.Out : WeightRows.In;

    private static string Describe(string chain, NodeProto node) => node.Name.Length == 0 ? chain : $"{chain} '{node.Name}'";

    private void AddUse(List<NodePathUse> uses, string path, NodeProto node, int input, bool isBias)
    {
        if (input >= node.Input.Count)
        {
            return;
        }
        string? init = InitializerBehind(node.Input[input]);
        if (init is null)
        {
            return;
        }
        int rank = Initializers[init].Dims.Count;
        // Weights are matrices; biases are vectors (an Add of a matrix is not a bias).
        if ((isBias && rank != 1) || (!isBias && rank != 2))
        {
            return;
        }
        uses.Add(new NodePathUse(path, node, init, isBias));
    }
}
