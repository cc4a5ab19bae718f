using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using OnnxLora.Core.Peft.Internals;

namespace OnnxLora.Core.Peft;

/// <summary>
/// What this project does with each field PEFT defines (LoraConfig, LoHaConfig, LoKrConfig and their
/// PeftConfig base): every field is honoured, has no effect on a merge (training-time or
/// informational), or is refused with an error naming it and saying why. docs/peft-config-fields.md
/// is the table of these rules; keep both in step.
/// </summary>
public sealed partial record PeftAdapterConfig
{
    /// <summary>Fields that change nothing in a merge: informational, or used only while training.</summary>
    private static readonly string[] NoEffectFields =
    [
        // PeftConfig / PeftConfigMixin
        "revision", "inference_mode", "auto_mapping", "peft_version",
        // LoraConfig: layer implementations and initialisation helpers that leave ΔW = s·B·A as it is
        "megatron_config", "megatron_core", "loftq_config", "eva_config", "corda_config", "lora_ga_config",
        "velora_config", "monteclora_config", "runtime_config", "ensure_weight_tying", "modules_to_tie", "target_modules_to_tie", "qalora_group_size",
        // LoHa / LoKr
        "use_effective_conv2d", "rank_dropout_scale", "use_khatri_rao",
    ];

    /// <summary>
    /// Fields whose non-default value makes the adapter's update something a plain merge cannot
    /// reproduce; each is refused with the reason given.
    /// </summary>
    private static readonly (string Field, string Why)[] RefusedFields =
    [
        ("layer_replication", "the adapter was trained on a model whose layers were replicated; PEFT's LoraModel._check_merge_allowed refuses to merge such adapters"),
        ("alora_invocation_tokens", "activated LoRA applies its update only from the invocation tokens on, so it cannot be folded into weights; PEFT's aLoRA variant refuses to merge it"),
        ("use_qalora", "QALoRA's lora_A works on group-pooled inputs of a GPTQ layer; PEFT cannot merge it either"),
        ("target_parameters", "LoRA on bare nn.Parameter tensors (e.g. MoE experts) is not supported"),
        ("trainable_token_indices", "trainable-token deltas for selected embedding rows are not supported"),
        ("arrow_config", "Arrow routes between adapters per token; PEFT refuses to merge an Arrow router"),
        ("kasa_config", "KaSA truncates the base weight's singular values when the adapter is created, so the original base is not what it was trained on"),
        ("use_bdlora", "block-diagonal (BD-LoRA) factors are not supported"),
    ];

    /// <summary>init_lora_weights values that rewrite the base weights when the adapter is created.</summary>
    private static readonly string[] BaseRewritingInits = ["pissa", "olora", "corda", "lora_ga"];

    /// <summary>Initialisations that leave the base weights untouched (the merge is the plain ΔW).</summary>
    private static readonly string[] PlainInits = ["true", "false", "gaussian", "eva", "orthogonal", "mica", "lycoris"];

    /// <summary>Every field name this version knows (read into a property, of no effect on a merge, or refused); docs/peft-config-fields.md lists each.</summary>
    internal static IReadOnlyList<string> KnownFieldNames => CommonFields.Concat(LoraFields).Concat(LoHaFields).Concat(LoKrFields)
        .Concat(NoEffectFields).Concat(RefusedFields.Select(r => r.Field)).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToArray();

    /// <summary>
    /// Why PEFT would not put this adapter on the module at <paramref name="modulePath"/> (PEFT's
    /// <c>check_target_module_exists</c> in tuners_utils.py, applied in its order: exclude_modules,
    /// modules_to_save, target_modules, then layers_to_transform / layers_pattern), or null when it would.
    /// Field is the config field that decides; Reason says how. A null <see cref="TargetModules"/> (PEFT's
    /// per-architecture default) and "all-linear" select every module.
    /// </summary>
    public (string Field, string Reason)? WhyNotTargeted(string modulePath)
    {
        ArgumentNullException.ThrowIfNull(modulePath);
        if (ExcludeModules is { } exclude && exclude.Matches(modulePath))
        {
            return ("exclude_modules", $"{exclude} excludes it");
        }
        if (ModulesToSave is { Count: > 0 } saved && saved.FirstOrDefault(m => SavedModuleRegex(m).IsMatch(modulePath)) is { } save)
        {
            return ("modules_to_save", $"'{save}' is saved in full, and PEFT never puts an adapter on a module it saves in full");
        }
        if (TargetModules is null)
        {
            return null;
        }
        if (!TargetModules.Matches(modulePath))
        {
            return ("target_modules", $"{TargetModules} does not select it");
        }
        // As PEFT: the layer filter applies only to list targets matched by suffix (not to an exact name).
        if (TargetModules.Kind != TargetModulesKind.List || TargetModules.Names.Contains(modulePath, StringComparer.Ordinal)
            || LayersToTransform is not { Count: > 0 } layers)
        {
            return null;
        }
        int? index = LayerIndex(modulePath);
        if (index is null)
        {
            return LayersPattern is { Count: > 0 }
                ? ("layers_pattern", $"[{string.Join(", ", LayersPattern)}] finds no layer index in its path")
                : ("layers_to_transform", "no layer index (a number between dots) was found in its path");
        }
        return layers.Contains(index.Value)
            ? null
            : ("layers_to_transform", $"[{string.Join(", ", layers)}] does not include its layer {index.Value.ToString(CultureInfo.InvariantCulture)}");
    }

    /// <summary>
    /// Fields of this config this version does not know, set to a value that could change how the
    /// update is formed (anything but null, false, 0 or empty). They are kept when the config is written.
    /// </summary>
    public IReadOnlyList<string> UnknownFieldWarnings(string source)
    {
        var known = new HashSet<string>(KnownFieldNames, StringComparer.Ordinal);
        var warnings = new List<string>();
        foreach (var (name, node) in Extras)
        {
            if (!known.Contains(name) && IsSet(node))
            {
                warnings.Add($"{source}: field '{name}' = {Truncated(node!.ToJsonString())} is not known to this version; it is kept when the config is written but not applied, so if it changes how the adapter's update is formed this merge differs from PEFT's.");
            }
        }
        string init = InitWeights.ToLowerInvariant();
        if (!PlainInits.Contains(init) && !init.StartsWith("pissa", StringComparison.Ordinal) && !BaseRewritingInits.Contains(init) && init != "loftq")
        {
            warnings.Add($"{source}: {InitFieldName} \"{InitWeights}\" is not an initialisation this version knows; the adapter is merged as a plain update (ΔW from its factors), which is wrong if that method rewrote the base weights.");
        }
        return warnings;
    }

    /// <summary>PEFT's LoraConfig.__post_init__ checks and the refusals of <see cref="RefusedFields"/>.</summary>
    private void ValidateFields(string source)
    {
        if (TargetModules is { Kind: not TargetModulesKind.List } && LayersToTransform is not null)
        {
            throw PeftThrow.Field(source, "layers_to_transform", $"[{string.Join(", ", LayersToTransform)}] with target_modules \"{TargetModules}\" (a string)",
                "null, or target_modules as a list of names (PEFT rejects this config)");
        }
        if (TargetModules is { Kind: not TargetModulesKind.List } && LayersPattern is not null)
        {
            throw PeftThrow.Field(source, "layers_pattern", $"[{string.Join(", ", LayersPattern)}] with target_modules \"{TargetModules}\" (a string)",
                "null, or target_modules as a list of names (PEFT rejects this config)");
        }
        if (LayersPattern is { Count: > 0 } && LayersToTransform is null)
        {
            throw PeftThrow.Field(source, "layers_pattern", $"[{string.Join(", ", LayersPattern)}] without layers_to_transform", "layers_to_transform to be set too (PEFT rejects this config)");
        }
        foreach (string pattern in LayersPattern ?? [])
        {
            CheckRegex(source, "layers_pattern", pattern);
        }
        foreach (string saved in ModulesToSave ?? [])
        {
            CheckRegex(source, "modules_to_save", saved);
        }
        if (LoraBias && InitWeights is not ("true" or "false"))
        {
            throw PeftThrow.Field(source, "lora_bias", $"true with {InitFieldName} \"{InitWeights}\"", "lora_bias only with init_lora_weights true or false (PEFT rejects this config)");
        }
        if (LoraBias && UseDora)
        {
            throw PeftThrow.Field(source, "lora_bias", "true with use_dora true", "lora_bias false for DoRA (PEFT rejects this config)");
        }
        string init = InitWeights.ToLowerInvariant();
        if (PeftType == PeftType.Lora && (init.StartsWith("pissa", StringComparison.Ordinal) || BaseRewritingInits.Contains(init)))
        {
            throw PeftThrow.Field(source, InitFieldName, $"\"{InitWeights}\"",
                "an adapter whose base weights are the original ones: this initialisation rewrote the base weights, so merge it only after converting it with PEFT's save_pretrained(path_initial_model_for_weight_conversion=...), which turns it into a plain LoRA for the original base");
        }
        if (PeftType == PeftType.Lora && init == "loftq")
        {
            throw PeftThrow.Field(source, InitFieldName, "\"loftq\"",
                "an adapter trained on the original base weights: a LoftQ adapter was trained against LoftQ's quantized backbone, which differs from the base it would be merged into");
        }
        foreach (var (field, why) in RefusedFields)
        {
            if (Extras.TryGetPropertyValue(field, out var node) && IsSet(node))
            {
                throw PeftThrow.Field(source, field, Truncated(node!.ToJsonString()), $"null or unset ({why})");
            }
        }
    }

    /// <summary>The layer index PEFT reads from a module path: the number after the first layer-list name (layers_pattern), or after the first dotted component.</summary>
    private int? LayerIndex(string modulePath)
    {
        IEnumerable<string> patterns = LayersPattern is { Count: > 0 } ? LayersPattern : [@"[^.]*"];
        foreach (string pattern in patterns)
        {
            var m = Regex.Match(modulePath, @"\A.*?\." + pattern + @"\.(\d+)\.", RegexOptions.CultureInvariant, TimeSpan.FromSeconds(1));
            if (m.Success && int.TryParse(m.Groups[1].ValueSpan, NumberStyles.None, CultureInfo.InvariantCulture, out int index))
            {
                return index;
            }
        }
        return null;
    }

    /// <summary>PEFT matches a modules_to_save entry m against a module path with <c>re.match(rf"(^|.*\.){m}($|\..*)", key)</c>.</summary>
    private static Regex SavedModuleRegex(string module) =>
        PatternCache.GetOrAdd("\u0001saved:" + module, _ => new Regex(@"\A(?:^|.*\.)" + module + @"(?:$|\..*)", RegexOptions.CultureInvariant, TimeSpan.FromSeconds(1)));

    private static void CheckRegex(string source, string field, string pattern)
    {
        try
        {
            _ = new Regex(pattern, RegexOptions.CultureInvariant, TimeSpan.FromSeconds(1));
        }
        catch (ArgumentException e)
        {
            throw PeftThrow.Field(source, field, $"\"{pattern}\", a regex that does not compile ({e.Message})", "module or layer-list names usable as regular expressions, as PEFT uses them");
        }
    }

    /// <summary>True when a field's value is anything but null, false, 0, "" or an empty list/object.</summary>
    private static bool IsSet(JsonNode? node) => node switch
    {
        null => false,
        JsonArray a => a.Count > 0,
        JsonObject o => o.Count > 0,
        JsonValue v => v.GetValueKind() switch
        {
            JsonValueKind.False or JsonValueKind.Null => false,
            JsonValueKind.String => v.GetValue<string>().Length > 0,
            JsonValueKind.Number => !v.TryGetValue(out double d) || d != 0,
            _ => true,
        },
        _ => true,
    };

    private static string Truncated(string s) => s.Length <= 60 ? s : s[..60] + "…";
}
