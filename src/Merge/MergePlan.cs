using System.Globalization;
using System.Text;
using OnnxLora.Core;
using OnnxLora.Core.Peft;
using OnnxLora.Core.Safetensors;
using OnnxLora.Merge.Internals;

namespace OnnxLora.Merge;

/// <summary>One adapter module's contribution to one target tensor.</summary>
/// <param name="AdapterIndex">Index into <see cref="MergePlan.Adapters"/>.</param>
/// <param name="Module">The adapter module.</param>
/// <param name="TargetTensor">The target's tensor name.</param>
/// <param name="Weight">The adapter's weight wᵢ.</param>
public sealed record MergePlanEntry(int AdapterIndex, AdapterModule Module, string TargetTensor, double Weight)
{
    public string ModulePath => Module.ModulePath;

    public AdapterModuleKind Kind => Module.Kind;

    public int Rank => Module.Rank;

    public double Alpha => Module.Alpha;

    public double Scaling => Module.Scaling;

    public bool UseDora => Module.UseDora;

    /// <summary>The target weight is stored [in, out] (fan_in_fan_out or embedding).</summary>
    public bool Transposed => Module.WeightIsTransposed;
}

/// <summary>A target tensor replaced outright by a tensor saved with an adapter (modules_to_save, bias, saved embedding).</summary>
public sealed record ReplacementEntry(int AdapterIndex, AdapterExtraTensor Extra, string TargetTensor);

/// <summary>
/// What a merge will do, decided before anything is written: each adapter module → target tensor
/// (kind, rank, scaling, weight), each replaced tensor, and how several adapters are combined.
/// Targets use it tensor by tensor: <see cref="ApplyTo"/> turns a base weight (fp32, stored layout)
/// into the merged weight. Checkpoint, ONNX and TorchSharp targets all merge through this.
/// </summary>
public sealed class MergePlan
{
    private readonly Dictionary<string, List<MergePlanEntry>> _byTensor;
    private readonly Dictionary<string, ReplacementEntry> _replacements;

    private MergePlan(string target, IReadOnlyList<WeightedAdapter> adapters, MergeOptions options,
        List<MergePlanEntry> entries, List<ReplacementEntry> replacements)
    {
        Target = target;
        Adapters = adapters;
        Options = options;
        Entries = entries;
        Replacements = replacements;
        _byTensor = entries.GroupBy(e => e.TargetTensor, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.ToList(), StringComparer.Ordinal);
        _replacements = replacements.ToDictionary(r => r.TargetTensor, StringComparer.Ordinal);
        TargetTensors = entries.Select(e => e.TargetTensor).Concat(replacements.Select(r => r.TargetTensor)).Distinct(StringComparer.Ordinal).ToList();
    }

    /// <summary>What is merged into (a folder, a model name); used in messages.</summary>
    public string Target { get; }

    public IReadOnlyList<WeightedAdapter> Adapters { get; }

    public MergeOptions Options { get; }

    /// <summary>Module contributions, adapter by adapter in module order.</summary>
    public IReadOnlyList<MergePlanEntry> Entries { get; }

    /// <summary>Tensors replaced outright.</summary>
    public IReadOnlyList<ReplacementEntry> Replacements { get; }

    /// <summary>Every target tensor this plan changes.</summary>
    public IReadOnlyList<string> TargetTensors { get; }

    /// <summary>Plans a merge into a safetensors checkpoint (single or sharded).</summary>
    public static MergePlan Create(IReadOnlyList<WeightedAdapter> adapters, SafetensorsCheckpoint checkpoint, MergeOptions? options = null) =>
        Create(adapters, checkpoint.Tensors.ToDictionary(t => t.Name, t => t.Spec, StringComparer.Ordinal), checkpoint.Directory, options);

    /// <summary>
    /// Plans a merge into any target described by its tensors (name → spec). Module paths map to
    /// "&lt;path&gt;.weight" (one prefix difference such as "model." / "bert." allowed); a module that maps
    /// to nothing, or to several tensors, is an error; shapes and dtypes are checked.
    /// </summary>
    /// <param name="adapters">Adapters with weights.</param>
    /// <param name="targetTensors">The target's tensors.</param>
    /// <param name="target">Names the target in messages.</param>
    /// <param name="options">Combination and safety options.</param>
    public static MergePlan Create(IReadOnlyList<WeightedAdapter> adapters, IReadOnlyDictionary<string, TensorSpec> targetTensors, string target, MergeOptions? options = null)
    {
        options ??= MergeOptions.Default;
        options.Validate();
        if (adapters.Count == 0)
        {
            throw MergeThrow.Option(nameof(adapters), "expected at least one adapter");
        }
        foreach (var wa in adapters)
        {
            if (!double.IsFinite(wa.Weight))
            {
                throw MergeThrow.Option(nameof(adapters), $"{wa.Adapter.Directory}: weight {wa.Weight} is not finite");
            }
        }
        var mapper = new TensorNameMapper(target, targetTensors.Keys);
        var entries = new List<MergePlanEntry>();
        var replacements = new List<ReplacementEntry>();
        for (int i = 0; i < adapters.Count; i++)
        {
            var adapter = adapters[i].Adapter;
            foreach (var m in adapter.Modules)
            {
                string name = mapper.Resolve(m.WeightName, $"adapter {adapter.Directory}: module '{m.ModulePath}'");
                var spec = targetTensors[name];
                if (!spec.Shape.SequenceEqual(m.WeightShape))
                {
                    throw MergeThrow.Invalid(target, $"tensor '{name}' (for module '{m.ModulePath}' of {adapter.Directory})", $"shape {spec.ShapeText}",
                        $"[{string.Join(", ", m.WeightShape)}] from the adapter ({m.Kind}, in={m.InFeatures}, out={m.OutFeatures}{(m.WeightIsTransposed ? ", stored transposed" : "")})");
                }
                CheckFloat(target, spec);
                entries.Add(new MergePlanEntry(i, m, name, adapters[i].Weight));
            }
            foreach (var x in adapter.ExtraTensors)
            {
                string name = mapper.Resolve(x.TargetName, $"adapter {adapter.Directory}: saved tensor '{x.Key}'");
                var spec = targetTensors[name];
                if (!spec.Shape.SequenceEqual(x.Tensor.Shape))
                {
                    throw MergeThrow.Invalid(target, $"tensor '{name}' (replaced by '{x.Key}' of {adapter.Directory})", $"shape {spec.ShapeText}", $"{x.Tensor.Spec.ShapeText} as saved in the adapter");
                }
                CheckFloat(target, spec);
                if (replacements.FirstOrDefault(r => r.TargetTensor == name) is { } other)
                {
                    throw MergeThrow.Invalid(target, $"tensor '{name}' is replaced by two adapters ({adapters[other.AdapterIndex].Adapter.Directory} and {adapter.Directory}); expected at most one full replacement per tensor.");
                }
                replacements.Add(new ReplacementEntry(i, x, name));
            }
        }
        foreach (var g in entries.GroupBy(e => e.TargetTensor))
        {
            if (g.Select(e => e.Transposed).Distinct().Count() > 1)
            {
                throw MergeThrow.Invalid(target, $"tensor '{g.Key}': adapters disagree on its layout (fan_in_fan_out); expected all to read it the same way.");
            }
        }
        return new MergePlan(target, adapters, options, entries, replacements);
    }

    private static void CheckFloat(string target, TensorSpec spec)
    {
        if (!spec.DType.IsFloat())
        {
            throw MergeThrow.Invalid(target, $"tensor '{spec.Name}' dtype", spec.DType.ToString(), "a floating-point dtype to merge into");
        }
    }

    /// <summary>True when the plan changes <paramref name="tensorName"/>.</summary>
    public bool Touches(string tensorName) => _byTensor.ContainsKey(tensorName) || _replacements.ContainsKey(tensorName);

    /// <summary>The module contributions to one tensor (empty when none).</summary>
    public IReadOnlyList<MergePlanEntry> EntriesFor(string tensorName) => _byTensor.TryGetValue(tensorName, out var l) ? l : [];

    /// <summary>The replacement of one tensor, or null.</summary>
    public ReplacementEntry? ReplacementFor(string tensorName) => _replacements.GetValueOrDefault(tensorName);

    /// <summary>
    /// Turns the base value of <paramref name="tensorName"/> (fp32, stored layout, row-major) into the
    /// merged value in place: replacement first, then the combined module updates. With
    /// <see cref="MergeOptions.SafeMode"/>, a NaN/Inf result is an error naming the tensor.
    /// </summary>
    public void ApplyTo(string tensorName, Span<float> weight)
    {
        if (_replacements.TryGetValue(tensorName, out var rep))
        {
            var values = Adapters[rep.AdapterIndex].Adapter.ReadSingles(rep.Extra);
            if (values.Length != weight.Length)
            {
                throw new ArgumentException($"tensor '{tensorName}': {weight.Length} values given, the replacement has {values.Length}", nameof(weight));
            }
            values.CopyTo(weight);
        }
        if (_byTensor.TryGetValue(tensorName, out var entries))
        {
            TensorCombiner.Apply(this, tensorName, entries, weight);
        }
        if (Options.SafeMode)
        {
            long bad = FloatCodec.FirstNonFinite(weight);
            if (bad >= 0)
            {
                throw MergeThrow.NonFinite(Target, tensorName, bad, weight[(int)bad], "after merging");
            }
        }
    }

    /// <summary>W_merged − W for one tensor (stored layout), without changing <paramref name="baseWeight"/>.</summary>
    public float[] DeltaFor(string tensorName, ReadOnlySpan<float> baseWeight)
    {
        var merged = baseWeight.ToArray();
        ApplyTo(tensorName, merged);
        for (int i = 0; i < merged.Length; i++)
        {
            merged[i] = (float)((double)merged[i] - baseWeight[i]);
        }
        return merged;
    }

    /// <summary>A table of the plan: one line per module and per replaced tensor.</summary>
    public string Describe()
    {
        var sb = new StringBuilder();
        var inv = CultureInfo.InvariantCulture;
        sb.Append(inv, $"merge into {Target}: {Adapters.Count} adapter(s), combination {Options.Combination}");
        if (Options.Combination is Combination.Ties or Combination.DareLinear or Combination.DareTies or Combination.MagnitudePrune)
        {
            sb.Append(inv, $", density {Options.Density}, seed {Options.Seed}");
        }
        sb.Append(inv, $", output dtype {Options.OutputDType?.ToString() ?? "keep"}, safe mode {(Options.SafeMode ? "on" : "off")}\n");
        for (int i = 0; i < Adapters.Count; i++)
        {
            var c = Adapters[i].Adapter.Config;
            sb.Append(inv, $"  [{i}] {Adapters[i].Adapter.Directory} {c.PeftType.ToJsonName()} r={c.R} alpha={c.Alpha} weight={Adapters[i].Weight}{(c.UseRsLora ? " rslora" : "")}{(c.UseDora ? " dora" : "")}\n");
        }
        foreach (var e in Entries)
        {
            sb.Append(inv, $"  [{e.AdapterIndex}] {e.ModulePath} -> {e.TargetTensor}  {e.Kind}{(e.UseDora ? "+DoRA" : "")} r={e.Rank} alpha={e.Alpha} s={e.Scaling:G6}{(e.Transposed ? " transposed" : "")}\n");
        }
        foreach (var r in Replacements)
        {
            sb.Append(inv, $"  [{r.AdapterIndex}] {r.Extra.Key} => {r.TargetTensor}  replace ({r.Extra.Kind})\n");
        }
        return sb.ToString();
    }
}
