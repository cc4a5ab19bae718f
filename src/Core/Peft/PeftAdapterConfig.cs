using System.Collections.Concurrent;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace OnnxLora.Core.Peft;

/// <summary>
/// The contents of a PEFT <c>adapter_config.json</c> for LoRA, LoHa and LoKr. Immutable; change with
/// <c>with</c>. Fields this type does not model are kept in <see cref="Extras"/> and written back
/// unchanged. Read with <see cref="Load"/> / <see cref="Parse"/>, write with <see cref="ToJson"/> / <see cref="Save"/>.
/// </summary>
/// <remarks>
/// Defaults are PEFT's: r = 8, alpha = 8, dropout 0, bias "none", no rsLoRA/DoRA, init weights true,
/// LoKr decompose_factor = -1.
/// </remarks>
public sealed partial record PeftAdapterConfig
{
    /// <summary>The file name PEFT uses.</summary>
    public const string FileName = "adapter_config.json";

    private static readonly ConcurrentDictionary<string, Regex> PatternCache = new(StringComparer.Ordinal);

    /// <summary><c>peft_type</c>.</summary>
    public PeftType PeftType { get; init; } = PeftType.Lora;

    /// <summary><c>task_type</c> (e.g. "CAUSAL_LM", "SEQ_CLS"), or null.</summary>
    public string? TaskType { get; init; }

    /// <summary><c>base_model_name_or_path</c>, or null.</summary>
    public string? BaseModelNameOrPath { get; init; }

    /// <summary><c>r</c>: the default rank.</summary>
    public int R { get; init; } = 8;

    /// <summary><c>lora_alpha</c> for LoRA, <c>alpha</c> for LoHa/LoKr: the default alpha.</summary>
    public double Alpha { get; init; } = 8;

    /// <summary><c>target_modules</c>, or null (PEFT then uses its per-architecture default).</summary>
    public TargetModules? TargetModules { get; init; }

    /// <summary><c>lora_dropout</c> (LoRA only).</summary>
    public double LoraDropout { get; init; }

    /// <summary><c>bias</c> (LoRA only).</summary>
    public PeftBias Bias { get; init; } = PeftBias.None;

    /// <summary><c>fan_in_fan_out</c>: the base weights are stored [in, out] (GPT-2 style Conv1D). LoRA only.</summary>
    public bool FanInFanOut { get; init; }

    /// <summary><c>use_rslora</c>: scaling alpha/√r instead of alpha/r. LoRA only.</summary>
    public bool UseRsLora { get; init; }

    /// <summary><c>use_dora</c>: weight-decomposed LoRA (a magnitude vector per module). LoRA only.</summary>
    public bool UseDora { get; init; }

    /// <summary><c>modules_to_save</c>: modules trained in full and saved with the adapter, or null.</summary>
    public IReadOnlyList<string>? ModulesToSave { get; init; }

    /// <summary><c>rank_pattern</c>: per-module ranks, keys are regex fragments matched as PEFT's get_pattern_key does. Order matters (first match wins).</summary>
    public IReadOnlyDictionary<string, int> RankPattern { get; init; } = new OrderedDictionary<string, int>();

    /// <summary><c>alpha_pattern</c>: per-module alphas, matched like <see cref="RankPattern"/>.</summary>
    public IReadOnlyDictionary<string, double> AlphaPattern { get; init; } = new OrderedDictionary<string, double>();

    /// <summary>
    /// <c>init_lora_weights</c> (LoRA) or <c>init_weights</c> (LoHa/LoKr): "true", "false", or a method
    /// name such as "gaussian" or "pissa". "true"/"false" are written as JSON booleans.
    /// </summary>
    public string InitWeights { get; init; } = "true";

    /// <summary><c>layers_to_transform</c>, or null for all layers (see <see cref="WhyNotTargeted"/>).</summary>
    public IReadOnlyList<int>? LayersToTransform { get; init; }

    /// <summary><c>layers_pattern</c>: the name(s) of the layer list whose index <see cref="LayersToTransform"/> selects, or null.</summary>
    public IReadOnlyList<string>? LayersPattern { get; init; }

    /// <summary><c>exclude_modules</c>: modules the adapter must not be applied to (a list of names or a regex), or null.</summary>
    public TargetModules? ExcludeModules { get; init; }

    /// <summary><c>lora_bias</c>: lora_B carries a bias, merged into the base layer's bias (LoRA only).</summary>
    public bool LoraBias { get; init; }

    /// <summary><c>decompose_both</c> (LoKr).</summary>
    public bool DecomposeBoth { get; init; }

    /// <summary><c>decompose_factor</c> (LoKr), -1 for PEFT's near-square factorization.</summary>
    public int DecomposeFactor { get; init; } = -1;

    /// <summary><c>rank_dropout</c> (LoHa/LoKr).</summary>
    public double RankDropout { get; init; }

    /// <summary><c>module_dropout</c> (LoHa/LoKr).</summary>
    public double ModuleDropout { get; init; }

    /// <summary>Every other field of the JSON file, kept as read and written back unchanged.</summary>
    public JsonObject Extras { get; init; } = [];

    /// <summary>The JSON name of the alpha field for this adapter type.</summary>
    public string AlphaFieldName => PeftType == PeftType.Lora ? "lora_alpha" : "alpha";

    /// <summary>The JSON name of the init-weights field for this adapter type.</summary>
    public string InitFieldName => PeftType == PeftType.Lora ? "init_lora_weights" : "init_weights";

    /// <summary>
    /// The rank of the module at <paramref name="modulePath"/> (its path in the base model, without
    /// PEFT's "base_model.model." prefix): the value of the first <see cref="RankPattern"/> key that
    /// matches, else <see cref="R"/>. A key matches when the regex <c>(.*\.)?(key)$</c> matches the path
    /// from its start (PEFT's <c>get_pattern_key</c>).
    /// </summary>
    public int RankFor(string modulePath)
    {
        string? key = PatternKey(RankPattern.Keys, modulePath);
        return key is null ? R : RankPattern[key];
    }

    /// <summary>The alpha of a module: first matching <see cref="AlphaPattern"/> key, else <see cref="Alpha"/>.</summary>
    public double AlphaFor(string modulePath)
    {
        string? key = PatternKey(AlphaPattern.Keys, modulePath);
        return key is null ? Alpha : AlphaPattern[key];
    }

    /// <summary>
    /// The scaling s of a module's update: alpha/r, or alpha/√r with <see cref="UseRsLora"/> (LoRA only;
    /// LoHa and LoKr always use alpha/r, as PEFT does).
    /// </summary>
    public double ScalingFor(string modulePath) => Scaling(AlphaFor(modulePath), RankFor(modulePath), PeftType == PeftType.Lora && UseRsLora);

    /// <summary>The one scaling formula: alpha/r, or alpha/√r for rsLoRA (PEFT's <c>LoraLayer.update_layer</c>).</summary>
    public static double Scaling(double alpha, int rank, bool useRsLora) => useRsLora ? alpha / Math.Sqrt(rank) : alpha / rank;

    /// <summary>The first key in <paramref name="keys"/> matching <paramref name="modulePath"/> the way PEFT's get_pattern_key does, or null.</summary>
    public static string? PatternKey(IEnumerable<string> keys, string modulePath)
    {
        foreach (string key in keys)
        {
            if (PatternRegex(key).IsMatch(modulePath))
            {
                return key;
            }
        }
        return null;
    }

    internal static Regex PatternRegex(string key) =>
        PatternCache.GetOrAdd(key, k => new Regex(@"\A(?:.*\.)?(?:" + k + ")$", RegexOptions.CultureInvariant, TimeSpan.FromSeconds(1)));
}
