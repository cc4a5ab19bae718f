using System.Globalization;
using System.Text;
using OnnxLora.Core;
using OnnxLora.Core.Onnx;
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

/// <summary>A module's lora_B bias (lora_bias) added to the base layer's bias: bias += w·s·b, as PEFT's merge does.</summary>
/// <param name="AdapterIndex">Index into <see cref="MergePlan.Adapters"/>.</param>
/// <param name="Module">The adapter module carrying the bias.</param>
/// <param name="TargetTensor">The target's bias tensor name.</param>
/// <param name="Weight">The adapter's weight wᵢ.</param>
public sealed record BiasEntry(int AdapterIndex, AdapterModule Module, string TargetTensor, double Weight);

/// <summary>
/// What a merge will do, decided before anything is written: each adapter module → target tensor
/// (kind, rank, scaling, weight, layout), each replaced tensor and lora_B bias, and how several adapters
/// are combined. Targets use it tensor by tensor: <see cref="ApplyTo"/> turns a base weight (fp32,
/// stored layout) into the merged weight. Checkpoint, ONNX and TorchSharp targets all merge through this.
/// </summary>
/// <remarks>
/// <see cref="Combination.DeltaSum"/> merges every adapter's update in the order given (PEFT's merge of
/// several adapters: DoRA sees the weight the adapters before it left). Every PEFT combination builds,
/// module by module, the adapter PEFT's add_weighted_adapter would build and merges that (ΔW' = B'·A',
/// scaling 1), so a merged model equals PEFT's add_weighted_adapter followed by merge_and_unload.
/// fan_in_fan_out of each linear LoRA module follows the layer it updates (shape, else model family),
/// as PEFT decides it; <see cref="Warnings"/> says where that overrides the config.
/// </remarks>
public sealed class MergePlan
{
    private readonly Dictionary<string, List<MergePlanEntry>> _byTensor;
    private readonly Dictionary<string, ReplacementEntry> _replacements;
    private readonly Dictionary<string, List<BiasEntry>> _biases;

    private MergePlan(string target, IReadOnlyList<WeightedAdapter> adapters, MergeOptions options, CombinationChoice choice,
        List<MergePlanEntry> entries, List<ReplacementEntry> replacements, List<BiasEntry> biases, List<string> warnings)
    {
        Target = target;
        Adapters = adapters;
        Options = options;
        AppliedCombination = choice.Applied;
        NewRank = choice.NewRank;
        Entries = entries;
        Replacements = replacements;
        BiasEntries = biases;
        Warnings = warnings;
        _byTensor = entries.GroupBy(e => e.TargetTensor, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.ToList(), StringComparer.Ordinal);
        _replacements = replacements.ToDictionary(r => r.TargetTensor, StringComparer.Ordinal);
        _biases = biases.GroupBy(b => b.TargetTensor, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.ToList(), StringComparer.Ordinal);
        TargetTensors = entries.Select(e => e.TargetTensor).Concat(replacements.Select(r => r.TargetTensor)).Concat(biases.Select(b => b.TargetTensor))
            .Distinct(StringComparer.Ordinal).ToList();
    }

    /// <summary>What is merged into (a folder, a model name); used in messages.</summary>
    public string Target { get; }

    public IReadOnlyList<WeightedAdapter> Adapters { get; }

    public MergeOptions Options { get; }

    /// <summary>The combination carried out: <see cref="MergeOptions.Combination"/>, or linear for one adapter (PEFT's fallback).</summary>
    public Combination AppliedCombination { get; }

    /// <summary>The rank the *_svd combinations keep (svd_rank, else PEFT's default: the largest adapter rank).</summary>
    public int NewRank { get; }

    /// <summary>Module contributions, adapter by adapter in module order (modules carry the fan_in_fan_out the merge uses).</summary>
    public IReadOnlyList<MergePlanEntry> Entries { get; }

    /// <summary>Tensors replaced outright.</summary>
    public IReadOnlyList<ReplacementEntry> Replacements { get; }

    /// <summary>lora_B biases added to base biases (lora_bias).</summary>
    public IReadOnlyList<BiasEntry> BiasEntries { get; }

    /// <summary>
    /// What the user should know and PEFT would warn about: the adapters' load warnings, fan_in_fan_out
    /// overridden by the layer type, PEFT's single-adapter fallback, a density that prunes nothing.
    /// </summary>
    public IReadOnlyList<string> Warnings { get; }

    /// <summary>Every target tensor this plan changes.</summary>
    public IReadOnlyList<string> TargetTensors { get; }

    /// <summary>Plans a merge into a safetensors checkpoint (single or sharded); its config.json's model_type helps decide fan_in_fan_out.</summary>
    public static MergePlan Create(IReadOnlyList<WeightedAdapter> adapters, SafetensorsCheckpoint checkpoint, MergeOptions? options = null) =>
        Create(adapters, checkpoint.Tensors.ToDictionary(t => t.Name, t => t.Spec, StringComparer.Ordinal), checkpoint.Directory, options,
            LayerLayout.ModelTypeIn(checkpoint.Directory));

    /// <summary>
    /// Plans a merge into any target described by its tensors (name → spec). Module paths map to
    /// "&lt;path&gt;.weight" (one prefix difference such as "model." / "bert." allowed); a module that maps
    /// to nothing, or to several tensors, is an error; shapes and dtypes are checked.
    /// </summary>
    /// <param name="adapters">Adapters with weights.</param>
    /// <param name="targetTensors">The target's tensors.</param>
    /// <param name="target">Names the target in messages.</param>
    /// <param name="options">Combination and safety options.</param>
    /// <param name="modelType">The target's Hugging Face model_type (config.json), when known: with square weights it tells nn.Linear from GPT-2's Conv1D.</param>
    public static MergePlan Create(IReadOnlyList<WeightedAdapter> adapters, IReadOnlyDictionary<string, TensorSpec> targetTensors, string target, MergeOptions? options = null,
        string? modelType = null)
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
        var choice = CombinationRules.Resolve(adapters, options, newAdapter: false);
        var warnings = adapters.SelectMany(a => a.Adapter.Warnings).ToList();
        var mapper = new AdapterNameMapper(target, targetTensors.Keys);
        var entries = new List<MergePlanEntry>();
        var replacements = new List<ReplacementEntry>();
        var biases = new List<BiasEntry>();
        for (int i = 0; i < adapters.Count; i++)
        {
            var adapter = adapters[i].Adapter;
            foreach (var module in adapter.Modules)
            {
                string name = mapper.Resolve(module.WeightName, $"adapter {adapter.Directory}: module '{module.ModulePath}'");
                var spec = targetTensors[name];
                var m = LayerLayout.Decide(adapter, module, name, spec.Shape, modelType, warnings);
                if (!spec.Shape.SequenceEqual(m.WeightShape))
                {
                    throw MergeThrow.Invalid(target, $"tensor '{name}' (for module '{m.ModulePath}' of {adapter.Directory})", $"shape {spec.ShapeText}",
                        $"[{string.Join(", ", m.WeightShape)}] from the adapter ({m.Kind}, in={m.InFeatures}, out={m.OutFeatures}{(m.WeightIsTransposed ? ", stored transposed" : "")})");
                }
                CheckFloat(target, spec);
                entries.Add(new MergePlanEntry(i, m, name, adapters[i].Weight));
                if (m.HasLoraBias)
                {
                    string bias = mapper.TryResolve(m.BiasName) ?? throw MergeThrow.Invalid(target,
                        $"adapter {adapter.Directory}: module '{m.ModulePath}' has a lora_B bias (lora_bias) but the target has no tensor '{m.BiasName}'; PEFT refuses to merge lora_bias into a layer without a bias too.");
                    var biasSpec = targetTensors[bias];
                    if (biasSpec.Shape.Count != 1 || biasSpec.Shape[0] != m.OutFeatures)
                    {
                        throw MergeThrow.Invalid(target, $"tensor '{bias}' (bias for the lora_B bias of module '{m.ModulePath}' of {adapter.Directory})", $"shape {biasSpec.ShapeText}", $"[{m.OutFeatures}]");
                    }
                    CheckFloat(target, biasSpec);
                    biases.Add(new BiasEntry(i, m, bias, adapters[i].Weight));
                }
            }
            foreach (var x in adapter.ExtraTensors)
            {
                string name = mapper.ResolveExtra(adapter, x);
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
            if (choice.Applied != Combination.DeltaSum && g.Select(e => e.Kind == AdapterModuleKind.LoraEmbedding).Distinct().Count() > 1)
            {
                throw MergeThrow.Invalid(target, $"tensor '{g.Key}': adapters update it both as an embedding and as a linear weight; combination {choice.Applied.ToName()} needs one kind per module.");
            }
        }
        warnings.AddRange(choice.Warnings);
        return new MergePlan(target, adapters, options, choice, entries, replacements, biases, warnings);
    }

    private static void CheckFloat(string target, TensorSpec spec)
    {
        if (!spec.DType.IsFloat())
        {
            throw MergeThrow.Invalid(target, $"tensor '{spec.Name}' dtype", spec.DType.ToString(), "a floating-point dtype to merge into");
        }
    }

    /// <summary>True when the plan changes <paramref name="tensorName"/>.</summary>
    public bool Touches(string tensorName) => _byTensor.ContainsKey(tensorName) || _replacements.ContainsKey(tensorName) || _biases.ContainsKey(tensorName);

    /// <summary>The module contributions to one tensor (empty when none).</summary>
    public IReadOnlyList<MergePlanEntry> EntriesFor(string tensorName) => _byTensor.TryGetValue(tensorName, out var l) ? l : [];

    /// <summary>The lora_B biases added to one bias tensor (empty when none).</summary>
    public IReadOnlyList<BiasEntry> BiasEntriesFor(string tensorName) => _biases.TryGetValue(tensorName, out var l) ? l : [];

    /// <summary>The replacement of one tensor, or null.</summary>
    public ReplacementEntry? ReplacementFor(string tensorName) => _replacements.GetValueOrDefault(tensorName);

    /// <summary>
    /// Turns the base value of <paramref name="tensorName"/> (fp32, stored layout, row-major) into the
    /// merged value in place: replacement first, then the combined module updates, then lora_B biases. With
    /// <see cref="MergeOptions.SafeMode"/>, a NaN/Inf result is an error naming the tensor.
    /// <paramref name="transposed"/>: <paramref name="weight"/> holds the transpose of the stored 2-D tensor (an ONNX
    /// MatMul initializer Wᵀ); the updates are then formed in that layout from transposed factors, which gives the same
    /// bits as transposing, merging and transposing back, without the two copies.
    /// </summary>
    public void ApplyTo(string tensorName, Span<float> weight, bool transposed = false)
    {
        if (_replacements.TryGetValue(tensorName, out var rep))
        {
            var values = Adapters[rep.AdapterIndex].Adapter.ReadSingles(rep.Extra);
            if (values.Length != weight.Length)
            {
                throw new ArgumentException($"tensor '{tensorName}': {weight.Length} values given, the replacement has {values.Length}", nameof(weight));
            }
            var shape = rep.Extra.Tensor.Spec.Shape;
            if (transposed && shape.Count != 2)
            {
                throw new ArgumentException($"tensor '{tensorName}': a transposed layout needs a 2-D replacement, found {rep.Extra.Tensor.Spec.ShapeText}", nameof(transposed));
            }
            (transposed ? DeltaMath.Transpose(values, (int)shape[0], (int)shape[1]) : values).CopyTo(weight);
        }
        if (_byTensor.TryGetValue(tensorName, out var entries))
        {
            TensorCombiner.Apply(this, entries, weight, transposed);
        }
        if (_biases.TryGetValue(tensorName, out var biasEntries))
        {
            foreach (var b in biasEntries)
            {
                Adapters[b.AdapterIndex].Adapter.ReadUpdate(b.Module).MergeBiasInto(weight, b.Weight);
            }
        }
        if (Options.SafeMode)
        {
            long bad = FloatCodec.FirstNonFinite(weight);
            if (bad >= 0)
            {
                throw NonFiniteAfterMerging(tensorName, bad, weight[(int)bad]);
            }
        }
    }

    /// <summary>
    /// <see cref="ApplyTo"/> for <paramref name="tensorName"/> as a <see cref="RowUpdate"/> (row blocks of the stored layout, or
    /// of its transpose when <paramref name="transposed"/>), giving the same bits, so a streamed merge can form the tensor block
    /// by block; or null when the tensor's merge is not formed row by row (a replacement, a bias, a DoRA, LoHa or LoKr update:
    /// use <see cref="ApplyTo"/>). Safe mode's check is the caller's: every value finite (<see cref="FloatCodec.FirstNonFinite"/>).
    /// </summary>
    public RowUpdate? RowUpdateFor(string tensorName, bool transposed = false) =>
        _replacements.ContainsKey(tensorName) || _biases.ContainsKey(tensorName) || !_byTensor.TryGetValue(tensorName, out var entries)
            ? null
            : TensorCombiner.RowUpdate(this, entries, transposed);

    /// <summary>
    /// The merge of <paramref name="tensorName"/> (stored layout) as a rewrite for the exporter's tensor writer: <see cref="ApplyTo"/>,
    /// its row form (<see cref="RowUpdateFor"/>, made when the writer asks for it) when it has one, and safe mode's refusal of
    /// non-finite results.
    /// </summary>
    public TensorRewrite RewriteFor(string tensorName) =>
        new(weight => ApplyTo(tensorName, weight), () => RowUpdateFor(tensorName),
            Options.SafeMode ? (index, value) => NonFiniteAfterMerging(tensorName, index, value) : null);

    /// <summary>Safe mode's error for a merged value that is NaN or ±Inf (<paramref name="index"/> in the layout merged).</summary>
    public Exception NonFiniteAfterMerging(string tensorName, long index, float value) =>
        MergeThrow.NonFinite(Target, tensorName, index, value, "after merging");

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
        sb.Append(inv, $"merge into {Target}: {Adapters.Count} adapter(s), combination {AppliedCombination.ToName()}");
        if (AppliedCombination != Options.Combination)
        {
            sb.Append(inv, $" (asked {Options.Combination.ToName()})");
        }
        if (AppliedCombination.Prunes())
        {
            sb.Append(inv, $", density {Options.Density}, seed {Options.Seed}");
        }
        if (AppliedCombination.ElectsSign())
        {
            sb.Append(inv, $", majority_sign_method {Options.MajoritySignMethod.ToName()}");
        }
        if (AppliedCombination.IsSvd())
        {
            sb.Append(inv, $", svd_rank {NewRank}");
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
        foreach (var b in BiasEntries)
        {
            sb.Append(inv, $"  [{b.AdapterIndex}] {b.Module.ModulePath}.lora_B.bias -> {b.TargetTensor}  add s·b s={b.Module.Scaling:G6}\n");
        }
        return sb.ToString();
    }
}
