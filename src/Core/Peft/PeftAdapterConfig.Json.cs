using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using OnnxLora.Core.IO;
using OnnxLora.Core.Peft.Internals;

namespace OnnxLora.Core.Peft;

public sealed partial record PeftAdapterConfig
{
    private const long MaxFileBytes = 16_000_000;

    private static readonly string[] CommonFields =
        ["peft_type", "task_type", "base_model_name_or_path", "r", "target_modules", "exclude_modules", "modules_to_save", "rank_pattern", "alpha_pattern",
            "layers_to_transform", "layers_pattern"];

    private static readonly string[] LoraFields =
        ["lora_alpha", "lora_dropout", "bias", "fan_in_fan_out", "use_rslora", "use_dora", "init_lora_weights", "lora_bias"];

    private static readonly string[] LoHaFields = ["alpha", "rank_dropout", "module_dropout", "init_weights"];

    private static readonly string[] LoKrFields = ["alpha", "rank_dropout", "module_dropout", "init_weights", "decompose_both", "decompose_factor"];

    /// <summary>Reads and validates an adapter_config.json file.</summary>
    /// <exception cref="OnnxLoraException">Bad input: malformed JSON, a field of the wrong type or out of range; the message names the file and field.</exception>
    public static PeftAdapterConfig Load(string path)
    {
        path = Path.GetFullPath(path);
        if (!File.Exists(path))
        {
            throw OnnxLoraException.NotFound("adapter config", path);
        }
        long length = new FileInfo(path).Length;
        if (length > MaxFileBytes)
        {
            throw PeftThrow.Field(path, "file length", $"{length} bytes", $"at most {MaxFileBytes} bytes for an adapter config");
        }
        return Parse(File.ReadAllText(path, Encoding.UTF8), path);
    }

    /// <summary>Parses adapter_config.json text; <paramref name="source"/> names it in error messages.</summary>
    public static PeftAdapterConfig Parse(string json, string source)
    {
        JsonNode? root;
        try
        {
            // A repeated key is refused: Python's json keeps the last value silently, which hides which one PEFT used.
            root = JsonNode.Parse(QuotePythonSpecialNumbers(json), null, new JsonDocumentOptions { MaxDepth = 64, AllowDuplicateProperties = false });
        }
        catch (JsonException e)
        {
            throw PeftThrow.Invalid(source, $"not valid JSON ({e.Message})", e);
        }
        if (root is not JsonObject obj)
        {
            throw PeftThrow.Field(source, "root", root is null ? "null" : root.GetValueKind().ToString(), "a JSON object");
        }
        var reader = new FieldReader(source);
        if (!obj.TryGetPropertyValue("peft_type", out var typeNode) || typeNode is null)
        {
            throw PeftThrow.Field(source, "peft_type", "nothing", "\"LORA\", \"LOHA\" or \"LOKR\"");
        }
        string typeName = reader.String(typeNode, "peft_type");
        if (!PeftNames.TryParsePeftType(typeName, out var type))
        {
            throw PeftThrow.Field(source, "peft_type", $"\"{typeName}\"", "\"LORA\", \"LOHA\" or \"LOKR\" (other PEFT methods are not supported)");
        }
        var known = new HashSet<string>(CommonFields.Concat(KnownFieldsFor(type)), StringComparer.Ordinal);
        var config = new PeftAdapterConfig { PeftType = type };
        var extras = new JsonObject();
        foreach (var (name, node) in obj)
        {
            if (!known.Contains(name))
            {
                extras[name] = node?.DeepClone();
                continue;
            }
            config = name switch
            {
                "peft_type" => config,
                "task_type" => config with { TaskType = reader.NullableString(node, name) },
                "base_model_name_or_path" => config with { BaseModelNameOrPath = reader.NullableString(node, name) },
                "r" => config with { R = reader.Int(node, name) },
                "lora_alpha" or "alpha" => config with { Alpha = reader.Number(node, name) },
                "target_modules" => config with { TargetModules = reader.Targets(node, name) },
                "lora_dropout" => config with { LoraDropout = reader.Number(node, name) },
                "bias" => config with { Bias = reader.Bias(node, name) },
                "fan_in_fan_out" => config with { FanInFanOut = reader.Bool(node, name) },
                "use_rslora" => config with { UseRsLora = reader.Bool(node, name) },
                "use_dora" => config with { UseDora = reader.Bool(node, name) },
                "modules_to_save" => config with { ModulesToSave = reader.NullableStringList(node, name) },
                "rank_pattern" => config with { RankPattern = reader.IntMap(node, name) },
                "alpha_pattern" => config with { AlphaPattern = reader.NumberMap(node, name) },
                "init_lora_weights" or "init_weights" => config with { InitWeights = reader.BoolOrString(node, name) },
                "layers_to_transform" => config with { LayersToTransform = reader.NullableIntList(node, name) },
                "layers_pattern" => config with { LayersPattern = reader.NullableStringOrList(node, name) },
                "exclude_modules" => config with { ExcludeModules = reader.Targets(node, name) },
                "lora_bias" => config with { LoraBias = reader.Bool(node, name) },
                "decompose_both" => config with { DecomposeBoth = reader.Bool(node, name) },
                "decompose_factor" => config with { DecomposeFactor = reader.Int(node, name) },
                "rank_dropout" => config with { RankDropout = reader.Number(node, name) },
                "module_dropout" => config with { ModuleDropout = reader.Number(node, name) },
                _ => throw new InvalidOperationException($"unhandled known field {name}"),
            };
        }
        config = config with { Extras = extras };
        config.Validate(source);
        return config;
    }

    /// <summary>
    /// Checks every value is in range: r &gt; 0, alphas finite and ≥ 0, dropouts in [0, 1], pattern
    /// ranks &gt; 0, regexes that compile, and no setting this project cannot merge exactly.
    /// </summary>
    /// <exception cref="OnnxLoraException">Bad input: the first problem found, naming <paramref name="source"/> and the field.</exception>
    public void Validate(string source)
    {
        if (R <= 0)
        {
            throw PeftThrow.Field(source, "r", R.ToString(System.Globalization.CultureInfo.InvariantCulture), "a positive integer");
        }
        CheckAlpha(source, AlphaFieldName, Alpha);
        CheckProbability(source, "lora_dropout", LoraDropout);
        CheckProbability(source, "rank_dropout", RankDropout);
        CheckProbability(source, "module_dropout", ModuleDropout);
        foreach (var (key, rank) in RankPattern)
        {
            CheckPatternKey(source, "rank_pattern", key);
            if (rank <= 0)
            {
                throw PeftThrow.Field(source, $"rank_pattern['{key}']", rank.ToString(System.Globalization.CultureInfo.InvariantCulture), "a positive integer");
            }
        }
        foreach (var (key, alpha) in AlphaPattern)
        {
            CheckPatternKey(source, "alpha_pattern", key);
            CheckAlpha(source, $"alpha_pattern['{key}']", alpha);
        }
        if (PeftType != PeftType.Lora && (UseDora || UseRsLora || FanInFanOut || LoraBias || Bias != PeftBias.None))
        {
            throw PeftThrow.Invalid(source, $"use_dora, use_rslora, fan_in_fan_out, lora_bias and bias apply to LORA adapters only; this is {PeftType.ToJsonName()}.");
        }
        ValidateFields(source);
        if (PeftType == PeftType.LoHa && Extras.TryGetPropertyValue("use_khatri_rao", out var kr) && kr is JsonValue v && v.TryGetValue(out bool on) && on)
        {
            throw PeftThrow.Field(source, "use_khatri_rao", "true", "false (LoHa's ABBA/Khatri-Rao scaling is not supported)");
        }
        if (PeftType == PeftType.LoHa && string.Equals(InitWeights, "abba", StringComparison.OrdinalIgnoreCase))
        {
            throw PeftThrow.Field(source, "init_weights", "\"abba\"", "true, false or a LoHa init without ABBA scaling (ABBA is not supported)");
        }
    }

    private static void CheckAlpha(string source, string field, double alpha)
    {
        if (!double.IsFinite(alpha) || alpha < 0)
        {
            throw PeftThrow.Field(source, field, FormatNumber(alpha), "a finite number ≥ 0");
        }
    }

    private static void CheckProbability(string source, string field, double p)
    {
        if (!double.IsFinite(p) || p < 0 || p > 1)
        {
            throw PeftThrow.Field(source, field, FormatNumber(p), "a probability in [0, 1]");
        }
    }

    private static void CheckPatternKey(string source, string field, string key)
    {
        try
        {
            _ = PatternRegex(key);
        }
        catch (ArgumentException e)
        {
            throw PeftThrow.Field(source, $"{field} key '{key}'", $"a regex that does not compile ({e.Message})", "a valid regular expression");
        }
    }

    private static string FormatNumber(double d) => double.IsNaN(d) ? "NaN" : d.ToString("R", System.Globalization.CultureInfo.InvariantCulture);

    private static string[] KnownFieldsFor(PeftType type) => type switch
    {
        PeftType.Lora => LoraFields,
        PeftType.LoHa => LoHaFields,
        _ => LoKrFields,
    };

    /// <summary>
    /// The JSON text PEFT would write: keys sorted, two-space indent, every known field of this
    /// adapter type plus <see cref="Extras"/>.
    /// </summary>
    public string ToJson()
    {
        var obj = new SortedDictionary<string, JsonNode?>(StringComparer.Ordinal);
        foreach (var (name, node) in Extras)
        {
            obj[name] = node?.DeepClone();
        }
        obj["peft_type"] = PeftType.ToJsonName();
        obj["task_type"] = TaskType;
        obj["base_model_name_or_path"] = BaseModelNameOrPath;
        obj["r"] = R;
        obj[AlphaFieldName] = NumberNode(Alpha);
        obj["target_modules"] = TargetsNode(TargetModules);
        obj["modules_to_save"] = ModulesToSave is null ? null : new JsonArray(ModulesToSave.Select(n => (JsonNode?)JsonValue.Create(n)).ToArray());
        var ranks = new JsonObject();
        foreach (var (k, v) in RankPattern)
        {
            ranks[k] = v;
        }
        obj["rank_pattern"] = ranks;
        var alphas = new JsonObject();
        foreach (var (k, v) in AlphaPattern)
        {
            alphas[k] = NumberNode(v);
        }
        obj["alpha_pattern"] = alphas;
        obj[InitFieldName] = InitWeights switch
        {
            "true" => JsonValue.Create(true),
            "false" => JsonValue.Create(false),
            var s => JsonValue.Create(s),
        };
        obj["layers_to_transform"] = LayersToTransform is null ? null : new JsonArray(LayersToTransform.Select(i => (JsonNode?)JsonValue.Create(i)).ToArray());
        obj["layers_pattern"] = LayersPattern is null ? null : new JsonArray(LayersPattern.Select(n => (JsonNode?)JsonValue.Create(n)).ToArray());
        obj["exclude_modules"] = TargetsNode(ExcludeModules);
        if (PeftType == PeftType.Lora)
        {
            obj["lora_dropout"] = NumberNode(LoraDropout);
            obj["bias"] = Bias.ToJsonName();
            obj["fan_in_fan_out"] = FanInFanOut;
            obj["use_rslora"] = UseRsLora;
            obj["use_dora"] = UseDora;
            obj["lora_bias"] = LoraBias;
        }
        else
        {
            obj["rank_dropout"] = NumberNode(RankDropout);
            obj["module_dropout"] = NumberNode(ModuleDropout);
        }
        if (PeftType == PeftType.LoKr)
        {
            obj["decompose_both"] = DecomposeBoth;
            obj["decompose_factor"] = DecomposeFactor;
        }
        var root = new JsonObject();
        foreach (var (k, v) in obj)
        {
            root[k] = v;
        }
        return root.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n";
    }

    /// <summary>Validates, then writes <see cref="ToJson"/> to <paramref name="path"/> atomically.</summary>
    public void Save(string path, bool overwrite = false)
    {
        Validate(path);
        using var file = AtomicFile.Create(path, overwrite);
        file.Stream.Write(Encoding.UTF8.GetBytes(ToJson()));
        file.Commit();
    }

    private static JsonNode? TargetsNode(TargetModules? targets) => targets switch
    {
        null => null,
        { Kind: TargetModulesKind.List } t => new JsonArray(t.Names.Select(n => (JsonNode?)JsonValue.Create(n)).ToArray()),
        var t => JsonValue.Create(t.Pattern),
    };

    private static JsonNode NumberNode(double d) =>
        Math.Abs(d) < 1e15 && d == Math.Floor(d) ? JsonValue.Create((long)d) : JsonValue.Create(d);

    /// <summary>
    /// Python's json module writes NaN, Infinity and -Infinity as bare tokens, which are not JSON.
    /// They are turned into strings here so that the field reader can report them by field name.
    /// </summary>
    private static string QuotePythonSpecialNumbers(string json)
    {
        if (!json.Contains("NaN", StringComparison.Ordinal) && !json.Contains("Infinity", StringComparison.Ordinal))
        {
            return json;
        }
        var sb = new StringBuilder(json.Length + 16);
        bool inString = false;
        for (int i = 0; i < json.Length; i++)
        {
            char c = json[i];
            if (inString)
            {
                sb.Append(c);
                if (c == '\\' && i + 1 < json.Length)
                {
                    sb.Append(json[++i]);
                }
                else if (c == '"')
                {
                    inString = false;
                }
                continue;
            }
            if (c == '"')
            {
                inString = true;
                sb.Append(c);
                continue;
            }
            string? token = json.AsSpan(i).StartsWith("NaN") ? "NaN"
                : json.AsSpan(i).StartsWith("-Infinity") ? "-Infinity"
                : json.AsSpan(i).StartsWith("Infinity") ? "Infinity"
                : null;
            if (token is not null)
            {
                sb.Append('"').Append(token).Append('"');
                i += token.Length - 1;
                continue;
            }
            sb.Append(c);
        }
        return sb.ToString();
    }

    /// <summary>Typed reads of JSON fields with errors naming the file and field.</summary>
    private sealed class FieldReader(string source)
    {
        public string String(JsonNode? node, string field) =>
            node is JsonValue v && v.GetValueKind() == JsonValueKind.String ? v.GetValue<string>() : throw Wrong(node, field, "a string");

        public string? NullableString(JsonNode? node, string field) => node is null ? null : String(node, field);

        public bool Bool(JsonNode? node, string field) =>
            node is JsonValue v && v.GetValueKind() is JsonValueKind.True or JsonValueKind.False ? v.GetValue<bool>() : throw Wrong(node, field, "true or false");

        public double Number(JsonNode? node, string field)
        {
            if (node is JsonValue v && v.GetValueKind() == JsonValueKind.Number)
            {
                return v.GetValue<double>();
            }
            if (node is JsonValue s && s.GetValueKind() == JsonValueKind.String && s.GetValue<string>() is "NaN" or "Infinity" or "-Infinity")
            {
                throw PeftThrow.Field(source, field, s.GetValue<string>(), "a finite number");
            }
            throw Wrong(node, field, "a number");
        }

        public int Int(JsonNode? node, string field)
        {
            double d = Number(node, field);
            if (d != Math.Floor(d) || d < int.MinValue || d > int.MaxValue)
            {
                throw PeftThrow.Field(source, field, FormatNumber(d), "an integer");
            }
            return (int)d;
        }

        public PeftBias Bias(JsonNode? node, string field)
        {
            string s = String(node, field);
            return PeftNames.TryParseBias(s, out var b) ? b : throw PeftThrow.Field(source, field, $"\"{s}\"", "\"none\", \"all\" or \"lora_only\"");
        }

        public string BoolOrString(JsonNode? node, string field) => node switch
        {
            JsonValue v when v.GetValueKind() == JsonValueKind.True => "true",
            JsonValue v when v.GetValueKind() == JsonValueKind.False => "false",
            JsonValue v when v.GetValueKind() == JsonValueKind.String => v.GetValue<string>(),
            _ => throw Wrong(node, field, "true, false or a method name"),
        };

        public TargetModules? Targets(JsonNode? node, string field)
        {
            switch (node)
            {
                case null:
                    return null;
                case JsonArray a:
                    return Peft.TargetModules.FromList(a.Select((n, i) => String(n, $"{field}[{i}]")));
                case JsonValue v when v.GetValueKind() == JsonValueKind.String:
                    string pattern = v.GetValue<string>();
                    try
                    {
                        return Peft.TargetModules.FromString(pattern);
                    }
                    catch (OnnxLoraException e) when (e.InnerException is ArgumentException inner)
                    {
                        throw PeftThrow.Field(source, field, $"the regex \"{pattern}\" that does not compile ({inner.Message})", "a list of names, a valid regex or \"all-linear\"");
                    }
                default:
                    throw Wrong(node, field, "a list of names, a regex string or \"all-linear\"");
            }
        }

        public IReadOnlyList<string>? NullableStringList(JsonNode? node, string field) => node switch
        {
            null => null,
            JsonArray a => a.Select((n, i) => String(n, $"{field}[{i}]")).ToArray(),
            _ => throw Wrong(node, field, "a list of module names or null"),
        };

        public IReadOnlyList<string>? NullableStringOrList(JsonNode? node, string field) => node switch
        {
            null => null,
            JsonArray a => a.Select((n, i) => String(n, $"{field}[{i}]")).ToArray(),
            JsonValue v when v.GetValueKind() == JsonValueKind.String => [v.GetValue<string>()],
            _ => throw Wrong(node, field, "a layer list name, a list of them, or null"),
        };

        public IReadOnlyList<int>? NullableIntList(JsonNode? node, string field) => node switch
        {
            null => null,
            JsonArray a => a.Select((n, i) => Int(n, $"{field}[{i}]")).ToArray(),
            JsonValue => [Int(node, field)],
            _ => throw Wrong(node, field, "a layer index, a list of them, or null"),
        };

        public IReadOnlyDictionary<string, int> IntMap(JsonNode? node, string field)
        {
            var map = new OrderedDictionary<string, int>(StringComparer.Ordinal);
            if (node is null)
            {
                return map;
            }
            if (node is not JsonObject o)
            {
                throw Wrong(node, field, "an object mapping module patterns to ranks");
            }
            foreach (var (k, v) in o)
            {
                map[k] = Int(v, $"{field}['{k}']");
            }
            return map;
        }

        public IReadOnlyDictionary<string, double> NumberMap(JsonNode? node, string field)
        {
            var map = new OrderedDictionary<string, double>(StringComparer.Ordinal);
            if (node is null)
            {
                return map;
            }
            if (node is not JsonObject o)
            {
                throw Wrong(node, field, "an object mapping module patterns to alphas");
            }
            foreach (var (k, v) in o)
            {
                map[k] = Number(v, $"{field}['{k}']");
            }
            return map;
        }

        private OnnxLoraException Wrong(JsonNode? node, string field, string expected) =>
            PeftThrow.Field(source, field, Describe(node), expected);

        private static string Describe(JsonNode? node) => node switch
        {
            null => "null",
            JsonValue v when v.GetValueKind() == JsonValueKind.String => $"the string \"{Truncate(v.GetValue<string>())}\"",
            JsonValue v => $"the {v.GetValueKind().ToString().ToLowerInvariant()} {Truncate(v.ToJsonString())}",
            JsonArray => "an array",
            JsonObject => "an object",
            _ => node.GetValueKind().ToString(),
        };

        private static string Truncate(string s) => s.Length <= 40 ? s : s[..40] + "…";
    }
}
