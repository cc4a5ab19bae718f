using OnnxLora.Core.Safetensors;

namespace OnnxLora.Core.Peft.Internals;

/// <summary>
/// Turns the keys of adapter_model.safetensors into adapted modules and extra tensors, and checks
/// them against the config: roles complete, shapes consistent with each other and with the rank
/// that rank_pattern gives, float dtypes, nothing unknown.
/// </summary>
internal static class AdapterKeyParser
{
    private static readonly (string Suffix, AdapterModuleKind Kind, AdapterTensorRole Role)[] LoraSuffixes =
    [
        (".lora_A.weight", AdapterModuleKind.Lora, AdapterTensorRole.LoraA),
        (".lora_B.weight", AdapterModuleKind.Lora, AdapterTensorRole.LoraB),
        (".lora_embedding_A", AdapterModuleKind.LoraEmbedding, AdapterTensorRole.LoraA),
        (".lora_embedding_B", AdapterModuleKind.LoraEmbedding, AdapterTensorRole.LoraB),
        (".lora_magnitude_vector", AdapterModuleKind.Lora, AdapterTensorRole.Magnitude),
        (".lora_magnitude_vector.weight", AdapterModuleKind.Lora, AdapterTensorRole.Magnitude),
        (".lora_B.bias", AdapterModuleKind.Lora, AdapterTensorRole.LoraBias),
    ];

    private static readonly (string Suffix, AdapterModuleKind Kind, AdapterTensorRole Role)[] LoHaSuffixes =
    [
        (".hada_w1_a", AdapterModuleKind.LoHa, AdapterTensorRole.HadaW1A),
        (".hada_w1_b", AdapterModuleKind.LoHa, AdapterTensorRole.HadaW1B),
        (".hada_w2_a", AdapterModuleKind.LoHa, AdapterTensorRole.HadaW2A),
        (".hada_w2_b", AdapterModuleKind.LoHa, AdapterTensorRole.HadaW2B),
    ];

    private static readonly (string Suffix, AdapterModuleKind Kind, AdapterTensorRole Role)[] LoKrSuffixes =
    [
        (".lokr_w1", AdapterModuleKind.LoKr, AdapterTensorRole.LokrW1),
        (".lokr_w1_a", AdapterModuleKind.LoKr, AdapterTensorRole.LokrW1A),
        (".lokr_w1_b", AdapterModuleKind.LoKr, AdapterTensorRole.LokrW1B),
        (".lokr_w2", AdapterModuleKind.LoKr, AdapterTensorRole.LokrW2),
        (".lokr_w2_a", AdapterModuleKind.LoKr, AdapterTensorRole.LokrW2A),
        (".lokr_w2_b", AdapterModuleKind.LoKr, AdapterTensorRole.LokrW2B),
    ];

    private static readonly string[] EmbeddingLayerNames = ["embed_tokens", "lm_head"];

    private sealed class Group(string path)
    {
        public string Path { get; } = path;

        public AdapterModuleKind? Kind { get; set; }

        public Dictionary<AdapterTensorRole, TensorInfo> Tensors { get; } = [];
    }

    public static (IReadOnlyList<AdapterModule> Modules, IReadOnlyList<AdapterExtraTensor> Extras, IReadOnlyList<string> Warnings) Parse(
        string file, PeftAdapterConfig config, IReadOnlyList<TensorInfo> tensors)
    {
        var warnings = new List<string>();
        var suffixes = config.PeftType switch
        {
            PeftType.Lora => LoraSuffixes,
            PeftType.LoHa => LoHaSuffixes,
            _ => LoKrSuffixes,
        };
        var groups = new Dictionary<string, Group>(StringComparer.Ordinal);
        var order = new List<Group>();
        var pending = new List<TensorInfo>();
        foreach (var t in tensors)
        {
            RejectUnsupported(file, t.Name);
            if (IsIgnoredBuffer(config, t.Name))
            {
                continue;
            }
            if (!t.Name.StartsWith(PeftAdapter.KeyPrefix, StringComparison.Ordinal))
            {
                pending.Add(t);
                continue;
            }
            string rest = t.Name[PeftAdapter.KeyPrefix.Length..];
            var match = suffixes.Where(s => rest.EndsWith(s.Suffix, StringComparison.Ordinal) && rest.Length > s.Suffix.Length)
                .OrderByDescending(s => s.Suffix.Length).FirstOrDefault();
            if (match.Suffix is null)
            {
                pending.Add(t);
                continue;
            }
            string path = rest[..^match.Suffix.Length];
            if (!groups.TryGetValue(path, out var g))
            {
                g = new Group(path);
                groups[path] = g;
                order.Add(g);
            }
            if (match.Role != AdapterTensorRole.Magnitude)
            {
                if (g.Kind is { } k && k != match.Kind)
                {
                    throw PeftThrow.Tensor(file, t.Name, $"{match.Kind} keys mixed with {k} keys for module '{path}'", "one kind of update per module");
                }
                g.Kind = match.Kind;
            }
            if (!g.Tensors.TryAdd(match.Role, t))
            {
                throw PeftThrow.Tensor(file, t.Name, $"a second {match.Role} tensor for module '{path}'", "one tensor per role");
            }
        }

        var modules = order.Select(g => BuildModule(file, config, g)).ToList();
        var extras = ClassifyRest(file, config, pending, groups);
        return (SelectTargeted(file, config, modules, extras, warnings), extras, warnings);
    }

    /// <summary>
    /// Keeps the modules PEFT would put this adapter on (check_target_module_exists). A module that
    /// modules_to_save replaces keeps only its saved copy, as in PEFT (its LoRA tensors are ignored,
    /// with a warning); any other module the config does not select is an error naming the field.
    /// </summary>
    private static List<AdapterModule> SelectTargeted(string file, PeftAdapterConfig config, List<AdapterModule> modules,
        List<AdapterExtraTensor> extras, List<string> warnings)
    {
        string source = Path.Combine(Path.GetDirectoryName(file) ?? "", PeftAdapterConfig.FileName);
        var kept = new List<AdapterModule>();
        foreach (var m in modules)
        {
            if (config.WhyNotTargeted(m.ModulePath) is not { } why)
            {
                kept.Add(m);
                continue;
            }
            if (why.Field == "modules_to_save")
            {
                bool replaced = extras.Any(x => x.Kind == AdapterExtraKind.ModulesToSave && x.TargetName == m.WeightName);
                warnings.Add($"{file}: module '{m.ModulePath}' has {m.Kind} tensors but modules_to_save lists it ({why.Reason}); "
                    + (replaced ? "its saved copy replaces the weight and the adapter's update is ignored, as in PEFT." : "the adapter's update is ignored, as in PEFT, and no saved copy of its weight was found."));
                continue;
            }
            throw PeftThrow.Field(source, why.Field, $"a config under which PEFT would not load module '{m.ModulePath}' ({why.Reason})",
                $"a config that selects every module with tensors in {Path.GetFileName(file)}, or a file without that module's tensors (PEFT would not apply them)");
        }
        return kept;
    }

    /// <summary>Training-time buffers of LoRA variants whose merge is the plain ΔW (VeLoRA, MonteCLoRA); not needed to merge.</summary>
    private static bool IsIgnoredBuffer(PeftAdapterConfig config, string key) =>
        (config.Extras.ContainsKey("velora_config") && config.Extras["velora_config"] is not null && key.EndsWith(".lora_velora_embed", StringComparison.Ordinal))
        || (config.Extras.ContainsKey("monteclora_config") && config.Extras["monteclora_config"] is not null && key.Contains(".lora_monteclora_sampler.", StringComparison.Ordinal));

    private static void RejectUnsupported(string file, string key)
    {
        if (key.EndsWith(".hada_t1", StringComparison.Ordinal) || key.EndsWith(".hada_t2", StringComparison.Ordinal))
        {
            throw PeftThrow.Tensor(file, key, "a LoHa CP/Tucker core (convolution with use_effective_conv2d)", "linear-layer LoHa only (hada_w1_a/b, hada_w2_a/b)");
        }
        if (key.EndsWith(".lokr_t2", StringComparison.Ordinal))
        {
            throw PeftThrow.Tensor(file, key, "a LoKr CP/Tucker core (convolution with use_effective_conv2d)", "linear-layer LoKr only (lokr_w1[_a/_b], lokr_w2[_a/_b])");
        }
    }

    private static AdapterModule BuildModule(string file, PeftAdapterConfig config, Group g)
    {
        string path = g.Path;
        foreach (var (role, t) in g.Tensors)
        {
            if (!t.DType.IsFloat())
            {
                throw PeftThrow.Tensor(file, t.Name, $"dtype {t.DType}", "a floating-point dtype (F32, F16, BF16 or F64)");
            }
        }
        int rank = config.RankFor(path);
        double alpha = config.AlphaFor(path);
        double scaling = config.ScalingFor(path);
        var kind = g.Kind ?? throw PeftThrow.Tensor(file, g.Tensors[AdapterTensorRole.Magnitude].Name,
            "a DoRA magnitude vector with no lora_A / lora_B", $"lora_A and lora_B for module '{path}'");
        int inF, outF;
        switch (kind)
        {
            case AdapterModuleKind.Lora:
            case AdapterModuleKind.LoraEmbedding:
                {
                    var a = Require(file, g, kind, AdapterTensorRole.LoraA);
                    var b = Require(file, g, kind, AdapterTensorRole.LoraB);
                    Check2D(file, a);
                    Check2D(file, b);
                    CheckRank(file, a, (int)a.Shape[0], rank, "rows", config);
                    CheckRank(file, b, (int)b.Shape[1], rank, "columns", config);
                    inF = checked((int)a.Shape[1]);
                    outF = checked((int)b.Shape[0]);
                    if (g.Tensors.TryGetValue(AdapterTensorRole.Magnitude, out var m))
                    {
                        if (kind == AdapterModuleKind.LoraEmbedding)
                        {
                            throw PeftThrow.Tensor(file, m.Name, "a DoRA magnitude on an embedding", "DoRA on linear layers only (embedding DoRA is not supported)");
                        }
                        if (!config.UseDora)
                        {
                            throw PeftThrow.Tensor(file, m.Name, "a DoRA magnitude vector while use_dora is false", "use_dora: true in adapter_config.json");
                        }
                        if (m.Shape.Count != 1 || m.Shape[0] != outF)
                        {
                            throw PeftThrow.Tensor(file, m.Name, $"shape [{string.Join(", ", m.Shape)}]", $"[{outF}] (one magnitude per output row)");
                        }
                    }
                    else if (config.UseDora && kind == AdapterModuleKind.Lora)
                    {
                        throw PeftThrow.Tensor(file, PeftAdapter.KeyFor(path, kind, AdapterTensorRole.Magnitude), "missing", "a DoRA magnitude vector because use_dora is true");
                    }
                    if (g.Tensors.TryGetValue(AdapterTensorRole.LoraBias, out var bias))
                    {
                        if (!config.LoraBias)
                        {
                            throw PeftThrow.Tensor(file, bias.Name, "a lora_B bias while lora_bias is false", "lora_bias: true in adapter_config.json");
                        }
                        if (bias.Shape.Count != 1 || bias.Shape[0] != outF)
                        {
                            throw PeftThrow.Tensor(file, bias.Name, $"shape [{string.Join(", ", bias.Shape)}]", $"[{outF}] (one bias per output feature)");
                        }
                    }
                    else if (config.LoraBias && kind == AdapterModuleKind.Lora)
                    {
                        throw PeftThrow.Tensor(file, PeftAdapter.KeyFor(path, kind, AdapterTensorRole.LoraBias), "missing", "lora_B's bias because lora_bias is true");
                    }
                    break;
                }
            case AdapterModuleKind.LoHa:
                {
                    var w1a = Require(file, g, kind, AdapterTensorRole.HadaW1A);
                    var w1b = Require(file, g, kind, AdapterTensorRole.HadaW1B);
                    var w2a = Require(file, g, kind, AdapterTensorRole.HadaW2A);
                    var w2b = Require(file, g, kind, AdapterTensorRole.HadaW2B);
                    foreach (var t in new[] { w1a, w1b, w2a, w2b })
                    {
                        Check2D(file, t);
                    }
                    CheckRank(file, w1a, (int)w1a.Shape[1], rank, "columns", config);
                    CheckRank(file, w1b, (int)w1b.Shape[0], rank, "rows", config);
                    CheckRank(file, w2a, (int)w2a.Shape[1], rank, "columns", config);
                    CheckRank(file, w2b, (int)w2b.Shape[0], rank, "rows", config);
                    outF = checked((int)w1a.Shape[0]);
                    inF = checked((int)w1b.Shape[1]);
                    CheckDim(file, w2a, 0, outF, "hada_w1_a's rows (out features)");
                    CheckDim(file, w2b, 1, inF, "hada_w1_b's columns (in features)");
                    break;
                }
            default:
                {
                    var (a, c) = LoKrFactor(file, g, rank, config, AdapterTensorRole.LokrW1, AdapterTensorRole.LokrW1A, AdapterTensorRole.LokrW1B, "w1");
                    var (b, d) = LoKrFactor(file, g, rank, config, AdapterTensorRole.LokrW2, AdapterTensorRole.LokrW2A, AdapterTensorRole.LokrW2B, "w2");
                    outF = checked(a * b);
                    inF = checked(c * d);
                    break;
                }
        }
        if (kind != AdapterModuleKind.LoKr && rank > Math.Min(inF, outF))
        {
            string key = g.Tensors.Values.First().Name;
            throw PeftThrow.Tensor(file, key, $"rank {rank} for a [{outF}, {inF}] update", $"a rank ≤ min(in, out) = {Math.Min(inF, outF)}");
        }
        return new AdapterModule(path, kind, rank, alpha, scaling, inF, outF,
            kind == AdapterModuleKind.Lora && config.FanInFanOut, new Dictionary<AdapterTensorRole, TensorInfo>(g.Tensors));
    }

    private static (int Rows, int Cols) LoKrFactor(string file, Group g, int rank, PeftAdapterConfig config,
        AdapterTensorRole full, AdapterTensorRole left, AdapterTensorRole right, string name)
    {
        bool hasFull = g.Tensors.TryGetValue(full, out var f);
        bool hasA = g.Tensors.TryGetValue(left, out var a);
        bool hasB = g.Tensors.TryGetValue(right, out var b);
        string fullKey = PeftAdapter.KeyFor(g.Path, AdapterModuleKind.LoKr, full);
        if (hasFull && (hasA || hasB))
        {
            throw PeftThrow.Tensor(file, fullKey, $"both lokr_{name} and lokr_{name}_a/_b", $"either the full lokr_{name} or its two factors");
        }
        if (hasFull)
        {
            Check2D(file, f!);
            return (checked((int)f!.Shape[0]), checked((int)f.Shape[1]));
        }
        if (!hasA || !hasB)
        {
            string missing = PeftAdapter.KeyFor(g.Path, AdapterModuleKind.LoKr, hasA ? right : left);
            throw PeftThrow.Tensor(file, missing, "missing", $"lokr_{name} or both lokr_{name}_a and lokr_{name}_b for module '{g.Path}'");
        }
        Check2D(file, a!);
        Check2D(file, b!);
        CheckRank(file, a!, (int)a!.Shape[1], rank, "columns", config);
        CheckRank(file, b!, (int)b!.Shape[0], rank, "rows", config);
        return (checked((int)a.Shape[0]), checked((int)b.Shape[1]));
    }

    private static TensorInfo Require(string file, Group g, AdapterModuleKind kind, AdapterTensorRole role)
    {
        if (g.Tensors.TryGetValue(role, out var t))
        {
            return t;
        }
        string present = string.Join(", ", g.Tensors.Values.Select(v => v.Name));
        throw PeftThrow.Tensor(file, PeftAdapter.KeyFor(g.Path, kind, role), "missing", $"it beside {present}");
    }

    private static void Check2D(string file, TensorInfo t)
    {
        if (t.Shape.Count != 2 || t.Shape[0] == 0 || t.Shape[1] == 0 || t.Shape[0] > int.MaxValue || t.Shape[1] > int.MaxValue)
        {
            throw PeftThrow.Tensor(file, t.Name, $"shape [{string.Join(", ", t.Shape)}]", "a non-empty 2-D matrix (convolution adapters are not supported)");
        }
    }

    private static void CheckRank(string file, TensorInfo t, int found, int rank, string which, PeftAdapterConfig config)
    {
        if (found != rank)
        {
            string source = config.RankPattern.Count > 0 ? "r / rank_pattern" : "r";
            throw PeftThrow.Tensor(file, t.Name, $"{found} {which} (shape [{string.Join(", ", t.Shape)}])", $"{rank}, the rank {source} gives this module");
        }
    }

    private static void CheckDim(string file, TensorInfo t, int dim, int expected, string what)
    {
        if (t.Shape[dim] != expected)
        {
            throw PeftThrow.Tensor(file, t.Name, $"shape [{string.Join(", ", t.Shape)}]", $"dimension {dim} = {expected}, matching {what}");
        }
    }

    private static List<AdapterExtraTensor> ClassifyRest(string file, PeftAdapterConfig config, List<TensorInfo> pending, Dictionary<string, Group> groups)
    {
        var extras = new List<AdapterExtraTensor>();
        var unknown = new List<string>();
        foreach (var t in pending)
        {
            if (!t.Name.StartsWith(PeftAdapter.KeyPrefix, StringComparison.Ordinal))
            {
                unknown.Add(t.Name);
                continue;
            }
            string rest = t.Name[PeftAdapter.KeyPrefix.Length..];
            AdapterExtraTensor? extra = null;
            int legacy = rest.IndexOf(".modules_to_save.", StringComparison.Ordinal);
            if (config.ModulesToSave is { Count: > 0 } && legacy > 0)
            {
                string target = rest[..legacy] + "." + rest[(legacy + ".modules_to_save.".Length)..];
                extra = new AdapterExtraTensor(t.Name, target, AdapterExtraKind.ModulesToSave, t);
            }
            else if (config.ModulesToSave is { Count: > 0 } mts && mts.Any(e => UnderModule(rest, e)))
            {
                extra = new AdapterExtraTensor(t.Name, rest, AdapterExtraKind.ModulesToSave, t);
            }
            else if (config.Bias != PeftBias.None && rest.EndsWith(".bias", StringComparison.Ordinal)
                && (config.Bias == PeftBias.All || groups.ContainsKey(rest[..^".bias".Length])))
            {
                extra = new AdapterExtraTensor(t.Name, rest, AdapterExtraKind.Bias, t);
            }
            else if (rest.EndsWith(".base_layer.weight", StringComparison.Ordinal) && groups.ContainsKey(rest[..^".base_layer.weight".Length]))
            {
                extra = new AdapterExtraTensor(t.Name, rest[..^".base_layer.weight".Length] + ".weight", AdapterExtraKind.SavedEmbedding, t);
            }
            else if (rest.EndsWith(".weight", StringComparison.Ordinal) && EmbeddingLayerNames.Any(n => UnderModule(rest, n)))
            {
                extra = new AdapterExtraTensor(t.Name, rest, AdapterExtraKind.SavedEmbedding, t);
            }
            if (extra is null)
            {
                unknown.Add(t.Name);
                continue;
            }
            if (!t.DType.IsFloat())
            {
                throw PeftThrow.Tensor(file, t.Name, $"dtype {t.DType}", "a floating-point dtype (F32, F16, BF16 or F64)");
            }
            extras.Add(extra);
        }
        if (unknown.Count > 0)
        {
            string list = string.Join(", ", unknown.Take(20).Select(k => $"'{k}'")) + (unknown.Count > 20 ? $" and {unknown.Count - 20} more" : "");
            throw PeftThrow.Invalid(file, $"unknown tensor keys for a {config.PeftType.ToJsonName()} adapter: {list}; expected 'base_model.model.<module>' followed by "
                + ExpectedSuffixes(config) + ", or tensors of modules_to_save / trained biases.");
        }
        return extras;
    }

    private static string ExpectedSuffixes(PeftAdapterConfig config) => config.PeftType switch
    {
        PeftType.Lora => ".lora_A.weight, .lora_B.weight, .lora_embedding_A/B or .lora_magnitude_vector",
        PeftType.LoHa => ".hada_w1_a/_b or .hada_w2_a/_b",
        _ => ".lokr_w1[_a/_b] or .lokr_w2[_a/_b]",
    };

    /// <summary>True when <paramref name="key"/> is a tensor of module <paramref name="module"/> (matched as a whole dotted suffix of the module path).</summary>
    private static bool UnderModule(string key, string module)
    {
        int from = 0;
        while (true)
        {
            int i = key.IndexOf(module + ".", from, StringComparison.Ordinal);
            if (i < 0)
            {
                return false;
            }
            if (i == 0 || key[i - 1] == '.')
            {
                return true;
            }
            from = i + 1;
        }
    }
}
