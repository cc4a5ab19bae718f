using Onnx;
using OnnxLora.Core;
using OnnxLora.Core.Onnx;

namespace OnnxLora.Merge.Tests.Onnx;

/// <summary>How a test model stores and reads its linear weights, after the exporters it imitates.</summary>
internal enum WeightStyle
{
    /// <summary>Initializer "&lt;path&gt;.weight" [out, in] → Transpose → MatMul (torch.onnx without constant folding).</summary>
    NamedTranspose,

    /// <summary>Anonymous "onnx::MatMul_N" holding Wᵀ [in, out] read by MatMul (torch.onnx / Optimum default).</summary>
    AnonymousMatMul,

    /// <summary>Anonymous "onnx::Gemm_N" [out, in] read by Gemm transB = 1.</summary>
    GemmTransB1,

    /// <summary>Anonymous "onnx::Gemm_N" [in, out] read by Gemm transB = 0.</summary>
    GemmTransB0,

    /// <summary>GPT-2 Conv1D: "&lt;path&gt;.weight" is the parameter itself, [in, out], read by MatMul.</summary>
    Conv1D,
}

/// <summary>Choices for <see cref="TorchLikeModel.Build"/>.</summary>
internal sealed record TorchLikeSpec
{
    public WeightStyle Style { get; init; } = WeightStyle.AnonymousMatMul;

    /// <summary>Element type of the weights; F16/BF16 weights are Cast to fp32 before use.</summary>
    public DType DType { get; init; } = DType.F32;

    /// <summary>Nodes named the torch.onnx way ("/model/layers.0/self_attn/q_proj/MatMul"); false leaves names empty.</summary>
    public bool NodeNames { get; init; } = true;

    /// <summary>Every initializer anonymous (embedding and bias too).</summary>
    public bool AllAnonymous { get; init; }

    public int Seed { get; init; } = 1;

    /// <summary>Changes the parameters (fp32, parameter layout) before they are stored.</summary>
    public Action<Dictionary<string, float[]>>? Tweak { get; init; }
}

/// <summary>
/// A tiny LLaMA-like block laid out as torch.onnx writes it: embedding Gather, q_proj → o_proj,
/// up_proj (+bias) → Relu → down_proj. Parameters use Hugging Face names; initializers are named or
/// anonymous according to <see cref="TorchLikeSpec"/>. Also the fp64 reference forward with LoRA
/// branches computed explicitly (x·Wᵀ + s·(x·Aᵀ)·Bᵀ), written independently of the code under test.
/// </summary>
internal sealed class TorchLikeModel
{
    public const int Vocab = 10;
    public const int Dim = 8;
    public const int Hidden = 12;
    public const string Embed = "model.embed_tokens";
    public const string Q = "model.layers.0.self_attn.q_proj";
    public const string O = "model.layers.0.self_attn.o_proj";
    public const string Up = "model.layers.0.mlp.up_proj";
    public const string Down = "model.layers.0.mlp.down_proj";

    public static readonly string[] Linears = [Q, O, Up, Down];

    private TorchLikeModel(TorchLikeSpec spec, ModelProto proto, Dictionary<string, float[]> parameters, Dictionary<string, string> initializers)
    {
        Spec = spec;
        Proto = proto;
        Params = parameters;
        InitializerOf = initializers;
    }

    public TorchLikeSpec Spec { get; }

    public ModelProto Proto { get; }

    /// <summary>Parameter name → values as stored (after rounding to the dtype), parameter layout ([out, in], embedding [vocab, dim]).</summary>
    public IReadOnlyDictionary<string, float[]> Params { get; }

    /// <summary>Parameter name → initializer name.</summary>
    public IReadOnlyDictionary<string, string> InitializerOf { get; }

    public static (int Out, int In) DimsOf(string path) => path switch
    {
        Up => (Hidden, Dim),
        Down => (Dim, Hidden),
        Embed => (Dim, Vocab),
        _ => (Dim, Dim),
    };

    /// <summary>True when the linear's initializer holds Wᵀ [in, out].</summary>
    public bool StoresTransposed(string path) => path != Embed && Spec.Style is WeightStyle.AnonymousMatMul or WeightStyle.GemmTransB0 or WeightStyle.Conv1D;

    public static TorchLikeModel Build(TorchLikeSpec spec)
    {
        var p = new Dictionary<string, float[]>(StringComparer.Ordinal)
        {
            [Embed + ".weight"] = TestData.Random(Vocab * Dim, spec.Seed),
            [Up + ".bias"] = TestData.Random(Hidden, spec.Seed + 1, 0.1),
        };
        int s = spec.Seed + 2;
        foreach (string path in Linears)
        {
            var (o, i) = DimsOf(path);
            p[path + ".weight"] = TestData.Random(o * i, s++, 0.5);
        }
        spec.Tweak?.Invoke(p);
        foreach (string key in p.Keys.ToList())
        {
            p[key] = Round(p[key], spec.DType);
        }

        var b = new OnnxGraphBuilder(17);
        var names = new Dictionary<string, string>(StringComparer.Ordinal);
        int anon = 0;
        string InitName(string kind, string param, bool anonymousByDefault) =>
            spec.AllAnonymous || anonymousByDefault ? $"onnx::{kind}_{anon++}" : param;
        string Add(string name, string param, long[] shape, float[] values)
        {
            names[param] = name;
            return b.AddInitializer(name, spec.DType, shape, values);
        }
        string Use(string init, string scope) =>
            spec.DType == DType.F32 ? init : b.AddNode("Cast", [init], $"/{scope}/Cast_{init.Replace(":", "", StringComparison.Ordinal)}", OnnxAttributes.Int("to", 1));

        string ids = b.AddInput("input_ids", DType.I64, "n");
        string embedScope = Scope(Embed);
        string table = Add(InitName("Gather", Embed + ".weight", false), Embed + ".weight", [Vocab, Dim], p[Embed + ".weight"]);
        string h = b.AddNode("Gather", [table, ids], $"/{embedScope}/Gather");
        if (spec.DType != DType.F32)
        {
            h = b.AddNode("Cast", [h], $"/{embedScope}/Cast", OnnxAttributes.Int("to", 1));
        }

        string Linear(string x, string path, bool bias)
        {
            var (o, i) = DimsOf(path);
            string scope = Scope(path);
            string wName = path + ".weight";
            var w = p[wName];
            var wt = Transpose(w, o, i);
            string? biasInit = bias ? Add(InitName("Add", path + ".bias", false), path + ".bias", [o], p[path + ".bias"]) : null;
            string y;
            switch (spec.Style)
            {
                case WeightStyle.NamedTranspose:
                    {
                        string init = Add(InitName("Transpose", wName, false), wName, [o, i], w);
                        string t = b.AddNode("Transpose", [Use(init, scope)], $"/{scope}/Transpose", OnnxAttributes.Ints("perm", 1, 0));
                        y = b.AddNode("MatMul", [x, t], $"/{scope}/MatMul");
                        break;
                    }
                case WeightStyle.AnonymousMatMul:
                case WeightStyle.Conv1D:
                    {
                        string init = Add(InitName("MatMul", wName, spec.Style == WeightStyle.AnonymousMatMul), wName, [i, o], wt);
                        y = b.AddNode("MatMul", [x, Use(init, scope)], $"/{scope}/MatMul");
                        break;
                    }
                default:
                    {
                        bool transB = spec.Style == WeightStyle.GemmTransB1;
                        string init = Add(InitName("Gemm", wName, true), wName, transB ? [o, i] : [i, o], transB ? w : wt);
                        var inputs = new List<string> { x, Use(init, scope) };
                        if (biasInit is not null)
                        {
                            inputs.Add(Use(biasInit, scope));
                            biasInit = null;
                        }
                        return b.AddNode("Gemm", inputs, $"/{scope}/Gemm", OnnxAttributes.Int("transB", transB ? 1 : 0));
                    }
            }
            return biasInit is null ? y : b.AddNode("Add", [y, Use(biasInit, scope)], $"/{scope}/Add");
        }

        h = Linear(h, Q, false);
        h = Linear(h, O, false);
        h = b.AddNode("Relu", [Linear(h, Up, true)], "/model/layers.0/mlp/act_fn/Relu");
        h = Linear(h, Down, false);
        b.AddNode("Identity", [h], ["logits"], "/Identity");
        b.AddOutput("logits", DType.F32, "n", Dim);
        var proto = b.Build("pytorch", "2.5.0");
        if (!spec.NodeNames)
        {
            foreach (var node in proto.Graph.Node)
            {
                node.Name = "";
            }
        }
        return new TorchLikeModel(spec, proto, p, names);
    }

    /// <summary>"model.layers.0.self_attn.q_proj" → "model/layers.0/self_attn/q_proj", as torch.onnx spells scopes.</summary>
    public static string Scope(string path)
    {
        var parts = new List<string>();
        foreach (string part in path.Split('.'))
        {
            if (parts.Count > 0 && part.All(char.IsAsciiDigit))
            {
                parts[^1] += "." + part;
            }
            else
            {
                parts.Add(part);
            }
        }
        return string.Join('/', parts);
    }

    /// <summary>Writes the model into a new folder; <paramref name="externalData"/> puts every weight in "model.onnx.data".</summary>
    public string Save(bool externalData = false)
    {
        string path = Path.Combine(TestData.NewDir(), "model.onnx");
        OnnxFile.Save(Proto, path, externalData
            ? new OnnxSaveOptions { ExternalData = OnnxExternalData.Always, ExternalThresholdBytes = 16 }
            : new OnnxSaveOptions { ExternalData = OnnxExternalData.Never });
        return path;
    }

    /// <summary>The parameters as a Hugging Face safetensors checkpoint in <paramref name="dtype"/>.</summary>
    public string SaveCheckpoint(DType dtype = DType.F32)
    {
        var tensors = Params.Select(kv => (kv.Key, dtype, ShapeOf(kv.Key), kv.Value)).ToList();
        return TestData.Checkpoint([tensors]);
    }

    public static long[] ShapeOf(string param)
    {
        if (param.EndsWith(".bias", StringComparison.Ordinal))
        {
            return [Hidden];
        }
        string path = param[..^".weight".Length];
        if (path == Embed)
        {
            return [Vocab, Dim];
        }
        var (o, i) = DimsOf(path);
        return [o, i];
    }

    // ---- fp64 reference ----

    /// <summary>
    /// The block's output in fp64 for token ids, with explicit LoRA branches: a linear adds
    /// s·(x·Aᵀ)·Bᵀ, the embedding adds s·(A[:, id])ᵀ·Bᵀ. <paramref name="weights"/> replaces parameters (DoRA).
    /// </summary>
    public double[] Forward(long[] ids, IReadOnlyList<LoraBranch> branches, IReadOnlyDictionary<string, double[]>? weights = null)
    {
        double[] W(string param) => weights is not null && weights.TryGetValue(param, out var w) ? w : Params[param].Select(v => (double)v).ToArray();
        int n = ids.Length;
        var table = W(Embed + ".weight");
        var h = new double[n * Dim];
        for (int t = 0; t < n; t++)
        {
            for (int d = 0; d < Dim; d++)
            {
                double v = table[(ids[t] * Dim) + d];
                foreach (var br in branches.Where(x => x.Path == Embed))
                {
                    for (int k = 0; k < br.Rank; k++)
                    {
                        v += br.Scale * br.A[(k * Vocab) + ids[t]] * br.B[(d * br.Rank) + k];
                    }
                }
                h[(t * Dim) + d] = v;
            }
        }
        double[] Linear(double[] x, string path, double[]? bias)
        {
            var (o, i) = DimsOf(path);
            var w = W(path + ".weight");
            var y = new double[n * o];
            for (int t = 0; t < n; t++)
            {
                for (int r = 0; r < o; r++)
                {
                    double acc = bias?[r] ?? 0;
                    for (int c = 0; c < i; c++)
                    {
                        acc += x[(t * i) + c] * w[(r * i) + c];
                    }
                    y[(t * o) + r] = acc;
                }
            }
            foreach (var br in branches.Where(x => x.Path == path))
            {
                for (int t = 0; t < n; t++)
                {
                    var ax = new double[br.Rank];
                    for (int k = 0; k < br.Rank; k++)
                    {
                        for (int c = 0; c < i; c++)
                        {
                            ax[k] += x[(t * i) + c] * br.A[(k * i) + c];
                        }
                    }
                    for (int r = 0; r < o; r++)
                    {
                        double acc = 0;
                        for (int k = 0; k < br.Rank; k++)
                        {
                            acc += ax[k] * br.B[(r * br.Rank) + k];
                        }
                        y[(t * o) + r] += br.Scale * acc;
                    }
                }
            }
            return y;
        }
        h = Linear(h, Q, null);
        h = Linear(h, O, null);
        h = Linear(h, Up, W(Up + ".bias")).Select(v => Math.Max(v, 0)).ToArray();
        return Linear(h, Down, null);
    }

    /// <summary>W + Σ s·B·A for one parameter in fp64, parameter layout ([out, in]; embedding [vocab, dim]).</summary>
    public double[] MergedParam(string path, IReadOnlyList<LoraBranch> branches)
    {
        var w = Params[path + ".weight"].Select(v => (double)v).ToArray();
        var (o, i) = DimsOf(path);
        foreach (var br in branches.Where(x => x.Path == path))
        {
            for (int r = 0; r < o; r++)
            {
                for (int c = 0; c < i; c++)
                {
                    double d = 0;
                    for (int k = 0; k < br.Rank; k++)
                    {
                        d += br.B[(r * br.Rank) + k] * br.A[(k * i) + c];
                    }
                    // ΔW is [out, in] = [dim, vocab] for the embedding; its table is [vocab, dim].
                    int at = path == Embed ? (c * o) + r : (r * i) + c;
                    w[at] += br.Scale * d;
                }
            }
        }
        return w;
    }

    /// <summary>A parameter-layout matrix in the layout its initializer uses.</summary>
    public double[] InInitializerLayout(string path, double[] param)
    {
        var (o, i) = DimsOf(path);
        return StoresTransposed(path) ? TestData.Transposed(param, o, i) : param;
    }

    public static float[] Round(float[] v, DType dtype) => dtype switch
    {
        DType.F16 => v.Select(x => (float)(Half)x).ToArray(),
        DType.BF16 => v.Select(RoundToBFloat16).ToArray(),
        DType.F32 => v,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, null),
    };

    /// <summary>Round to nearest even at 8 significant bits (finite inputs).</summary>
    public static float RoundToBFloat16(float x)
    {
        uint bits = BitConverter.SingleToUInt32Bits(x);
        bits += 0x7FFFu + ((bits >> 16) & 1u);
        return BitConverter.UInt32BitsToSingle(bits & 0xFFFF0000u);
    }

    private static float[] Transpose(float[] m, int rows, int cols)
    {
        var t = new float[m.Length];
        for (int r = 0; r < rows; r++)
        {
            for (int c = 0; c < cols; c++)
            {
                t[(c * rows) + r] = m[(r * cols) + c];
            }
        }
        return t;
    }
}

/// <summary>One LoRA update in a reference forward: A [r, in], B [out, r] (embedding: A [r, vocab], B [dim, r]), scale s·w.</summary>
internal sealed record LoraBranch(string Path, float[] A, float[] B, int Rank, double Scale);
