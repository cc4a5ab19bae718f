namespace OnnxLora.Models.Lora;

/// <summary>
/// How to inject LoRA adapters (the PEFT <c>LoraConfig</c> fields this project uses). Defaults follow
/// PEFT: r 8, alpha 8, no dropout, Kaiming-uniform A, B zeros.
/// </summary>
public sealed record LoraOptions
{
    /// <summary>Which modules get adapters (PEFT <c>target_modules</c>).</summary>
    public required LoraTargetModules TargetModules { get; init; }

    /// <summary>Rank r (PEFT <c>r</c>). Default 8.</summary>
    public int Rank { get; init; } = 8;

    /// <summary>Alpha (PEFT <c>lora_alpha</c>); the scale is alpha/r (alpha/√r with rsLoRA). Default 8.</summary>
    public double Alpha { get; init; } = 8;

    /// <summary>Dropout on the adapter input while training (PEFT <c>lora_dropout</c>). Default 0.</summary>
    public double Dropout { get; init; }

    /// <summary>Scale by alpha/√r instead of alpha/r (PEFT <c>use_rslora</c>). Default false.</summary>
    public bool UseRsLora { get; init; }

    /// <summary>Weight-decomposed LoRA (PEFT <c>use_dora</c>), Linear targets only. Default false.</summary>
    public bool UseDora { get; init; }

    /// <summary>Initialise A with N(0, 1/r²) instead of Kaiming-uniform (PEFT <c>init_lora_weights="gaussian"</c>). Default false.</summary>
    public bool InitGaussian { get; init; }

    /// <summary>
    /// Per-module ranks (PEFT <c>rank_pattern</c>), in order: the first key that matches the module path
    /// as <c>(.*\.)?(key)$</c> (a regular expression, anchored at the start) gives the rank. Empty by default.
    /// </summary>
    public IReadOnlyList<KeyValuePair<string, int>> RankPattern { get; init; } = [];

    /// <summary>Per-module alphas (PEFT <c>alpha_pattern</c>), matched like <see cref="RankPattern"/>. Empty by default.</summary>
    public IReadOnlyList<KeyValuePair<string, double>> AlphaPattern { get; init; } = [];

    /// <summary>
    /// Modules trained and saved whole besides the adapters (PEFT <c>modules_to_save</c>), matched by
    /// exact path or as a suffix of whole path components. Empty by default.
    /// </summary>
    public IReadOnlyList<string> ModulesToSave { get; init; } = [];

    /// <summary>Seed of the generator that initialises the adapters, in module order. Default 0.</summary>
    public long Seed { get; init; }
}

/// <summary>How LoRA target modules are chosen.</summary>
public enum LoraTargetKind
{
    /// <summary>A list of names; a module matches when its path equals a name or ends with "." + name.</summary>
    Names,

    /// <summary>One regular expression that must match the whole module path.</summary>
    Regex,

    /// <summary>Every Linear except the output head (<c>lm_head</c>), like PEFT's "all-linear".</summary>
    AllLinear,
}

/// <summary>PEFT <c>target_modules</c>: a list of names, a full-match regex, or "all-linear".</summary>
public sealed record LoraTargetModules
{
    private LoraTargetModules(LoraTargetKind kind, IReadOnlyList<string> names, string? pattern)
    {
        Kind = kind;
        Names = names;
        Pattern = pattern;
    }

    public LoraTargetKind Kind { get; }

    /// <summary>The names for <see cref="LoraTargetKind.Names"/>; empty otherwise.</summary>
    public IReadOnlyList<string> Names { get; }

    /// <summary>The expression for <see cref="LoraTargetKind.Regex"/>; null otherwise.</summary>
    public string? Pattern { get; }

    /// <summary>Modules whose path equals a name or ends with "." + name (e.g. "q_proj", "self_attn.v_proj").</summary>
    public static LoraTargetModules Of(params IEnumerable<string> names) => new(LoraTargetKind.Names, names.ToArray(), null);

    /// <summary>Modules whose whole path matches <paramref name="pattern"/> (Python <c>re.fullmatch</c>).</summary>
    public static LoraTargetModules Regex(string pattern) => new(LoraTargetKind.Regex, [], pattern);

    /// <summary>Every Linear except the output head.</summary>
    public static LoraTargetModules AllLinear { get; } = new(LoraTargetKind.AllLinear, [], null);

    /// <summary>PEFT's single-string form: "all-linear", or else a full-match regex.</summary>
    public static LoraTargetModules FromPeftString(string value) => value == "all-linear" ? AllLinear : Regex(value);

    public override string ToString() => Kind switch
    {
        LoraTargetKind.Names => "[" + string.Join(", ", Names.Select(n => $"\"{n}\"")) + "]",
        LoraTargetKind.Regex => $"regex \"{Pattern}\"",
        _ => "all-linear",
    };
}
