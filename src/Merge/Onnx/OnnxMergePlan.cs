using System.Globalization;
using System.Text;
using System.Text.Json;
using OnnxLora.Core;
using OnnxLora.Core.Peft;
using OnnxLora.Merge.Internals;

namespace OnnxLora.Merge.Onnx;

/// <summary>How an adapter module was matched to an ONNX initializer.</summary>
public enum OnnxMatchKind
{
    /// <summary>The initializer is named "&lt;module path&gt;.weight" (one leading component such as "model." may differ).</summary>
    Name,

    /// <summary>A MatMul/Gemm/Gather node named the torch.onnx way ("/model/layers.0/self_attn/q_proj/MatMul") reads the initializer.</summary>
    NodePath,

    /// <summary>The initializer's values equal the base checkpoint's tensor (W or Wᵀ).</summary>
    Content,
}

/// <summary>How an initializer stores the weight relative to the PyTorch parameter the adapter was trained on.</summary>
public enum OnnxWeightLayout
{
    /// <summary>As the parameter: [out, in] for nn.Linear, [in, out] for Conv1D (fan_in_fan_out), [num, dim] for embeddings.</summary>
    AsIs,

    /// <summary>Transposed: e.g. torch.onnx's folded MatMul weight Wᵀ [in, out], or Gemm with transB = 0.</summary>
    Transposed,
}

/// <summary>One adapter update and the initializer it changes.</summary>
/// <param name="AdapterIndex">Index into the adapters passed to the merge.</param>
/// <param name="ModulePath">The adapter module's path, or for a saved tensor (modules_to_save, bias) the parameter it replaces.</param>
/// <param name="Update">What is applied: "lora r=8 s=2", "loha r=4 s=1", "replace (ModulesToSave)", ...</param>
/// <param name="Initializer">The initializer's name in the model.</param>
/// <param name="Match">How the initializer was found.</param>
/// <param name="Layout">How it stores the weight.</param>
/// <param name="DType">Its element type (kept by the merge).</param>
/// <param name="Shape">Its dims.</param>
/// <param name="Via">How the graph reads it ("Transpose → MatMul '/model/.../MatMul'"), or "" when no reader was recognized.</param>
public sealed record OnnxMergeEntry(int AdapterIndex, string ModulePath, string Update, string Initializer, OnnxMatchKind Match,
    OnnxWeightLayout Layout, DType DType, IReadOnlyList<long> Shape, string Via)
{
    public string ShapeText => "[" + string.Join(", ", Shape) + "]";
}

/// <summary>
/// What a merge into an ONNX model will do, decided before anything is written: each adapter
/// module → initializer (how it was matched, layout, dtype, shape), and the underlying
/// <see cref="MergePlan"/> that computes the merged values. Printable as text
/// (<see cref="Describe"/>) and as JSON (<see cref="ToJson"/>).
/// </summary>
public sealed class OnnxMergePlan
{
    private readonly Dictionary<string, (string Key, OnnxWeightLayout Layout)> _byInitializer;

    internal OnnxMergePlan(string modelPath, MergePlan merge, IReadOnlyList<OnnxMergeEntry> entries, Dictionary<string, (string Key, OnnxWeightLayout Layout)> byInitializer)
    {
        ModelPath = modelPath;
        Merge = merge;
        Entries = entries;
        _byInitializer = byInitializer;
        Initializers = byInitializer.Keys.Order(StringComparer.Ordinal).ToList();
    }

    /// <summary>The ONNX model (full path).</summary>
    public string ModelPath { get; }

    /// <summary>The merge of the adapters into the weights, keyed by the adapters' parameter names.</summary>
    public MergePlan Merge { get; }

    /// <summary>One entry per adapter module and per saved tensor, adapter by adapter.</summary>
    public IReadOnlyList<OnnxMergeEntry> Entries { get; }

    /// <summary>What the user should know (see <see cref="MergePlan.Warnings"/>).</summary>
    public IReadOnlyList<string> Warnings => Merge.Warnings;

    /// <summary>The initializers the merge changes, sorted by name.</summary>
    public IReadOnlyList<string> Initializers { get; }

    /// <summary>True when the merge changes the initializer.</summary>
    public bool Touches(string initializer) => _byInitializer.ContainsKey(initializer);

    /// <summary>The parameter name the <see cref="Merge"/> plan uses for an initializer, and its layout.</summary>
    internal (string Key, OnnxWeightLayout Layout) TargetOf(string initializer) => _byInitializer[initializer];

    /// <summary>A table of the plan: a header, the adapters, then one line per module.</summary>
    public string Describe()
    {
        var inv = CultureInfo.InvariantCulture;
        var o = Merge.Options;
        var sb = new StringBuilder();
        sb.Append(inv, $"merge into {ModelPath}: {Merge.Adapters.Count} adapter(s), combination {Merge.AppliedCombination.ToName()}");
        if (Merge.AppliedCombination.Prunes())
        {
            sb.Append(inv, $", density {o.Density}, seed {o.Seed}");
        }
        sb.Append(inv, $", safe mode {(o.SafeMode ? "on" : "off")}; {Initializers.Count} initializer(s) change\n");
        for (int i = 0; i < Merge.Adapters.Count; i++)
        {
            var a = Merge.Adapters[i];
            var c = a.Adapter.Config;
            sb.Append(inv, $"  [{i}] {a.Adapter.Directory} {c.PeftType.ToJsonName()} r={c.R} alpha={c.Alpha} weight={a.Weight}\n");
        }
        int pathWidth = Entries.Count == 0 ? 0 : Entries.Max(e => e.ModulePath.Length);
        int initWidth = Entries.Count == 0 ? 0 : Entries.Max(e => e.Initializer.Length);
        foreach (var e in Entries)
        {
            sb.Append(inv, $"  [{e.AdapterIndex}] {e.ModulePath.PadRight(pathWidth)} -> {e.Initializer.PadRight(initWidth)}  {MatchName(e.Match),-9} {LayoutName(e.Layout),-10} {e.DType,-4} {e.ShapeText}  {e.Update}");
            if (e.Via.Length > 0)
            {
                sb.Append(inv, $"  via {e.Via}");
            }
            sb.Append('\n');
        }
        return sb.ToString();
    }

    /// <summary>The plan as JSON: model, combination, adapters, entries (module, initializer, match, layout, dtype, shape, via).</summary>
    public string ToJson()
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            var o = Merge.Options;
            w.WriteStartObject();
            w.WriteString("model", ModelPath);
            w.WriteString("combination", Merge.AppliedCombination.ToName());
            w.WriteNumber("density", o.Density);
            w.WriteBoolean("safe_mode", o.SafeMode);
            w.WriteStartArray("adapters");
            for (int i = 0; i < Merge.Adapters.Count; i++)
            {
                var a = Merge.Adapters[i];
                w.WriteStartObject();
                w.WriteNumber("index", i);
                w.WriteString("directory", a.Adapter.Directory);
                w.WriteString("peft_type", a.Adapter.Config.PeftType.ToJsonName());
                w.WriteNumber("r", a.Adapter.Config.R);
                w.WriteNumber("alpha", a.Adapter.Config.Alpha);
                w.WriteNumber("weight", a.Weight);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteStartArray("entries");
            foreach (var e in Entries)
            {
                w.WriteStartObject();
                w.WriteNumber("adapter", e.AdapterIndex);
                w.WriteString("module", e.ModulePath);
                w.WriteString("update", e.Update);
                w.WriteString("initializer", e.Initializer);
                w.WriteString("match", MatchName(e.Match));
                w.WriteString("layout", LayoutName(e.Layout));
                w.WriteString("dtype", e.DType.ToString());
                w.WriteStartArray("shape");
                foreach (long d in e.Shape)
                {
                    w.WriteNumberValue(d);
                }
                w.WriteEndArray();
                w.WriteString("via", e.Via);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(stream.ToArray());
    }

    /// <summary>"name", "node-path" or "content".</summary>
    public static string MatchName(OnnxMatchKind match) => match switch
    {
        OnnxMatchKind.Name => "name",
        OnnxMatchKind.NodePath => "node-path",
        _ => "content",
    };

    /// <summary>"as-is" or "transposed".</summary>
    public static string LayoutName(OnnxWeightLayout layout) => layout == OnnxWeightLayout.AsIs ? "as-is" : "transposed";
}
