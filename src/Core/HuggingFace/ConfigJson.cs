using System.Text.Json;
using OnnxLora.Core.Internals;

namespace OnnxLora.Core.HuggingFace;

/// <summary>
/// Typed, validated reads from one config.json object. Every error names the file and the field.
/// Remembers which fields were read so the rest can be kept verbatim (<see cref="Extras"/>).
/// </summary>
internal sealed class ConfigJson
{
    private readonly JsonElement _root;
    private readonly HashSet<string> _read = new(StringComparer.Ordinal);

    public ConfigJson(string file, JsonElement root)
    {
        File = file;
        _root = root;
    }

    public string File { get; }

    private bool TryGet(string name, out JsonElement value)
    {
        _read.Add(name);
        if (_root.TryGetProperty(name, out value) && value.ValueKind != JsonValueKind.Null)
        {
            return true;
        }
        value = default;
        return false;
    }

    /// <summary>Marks a field as interpreted without reading it (so it is not kept as an extra).</summary>
    public void Consume(string name) => _read.Add(name);

    /// <summary>True when the field is present, even as null.</summary>
    public bool Exists(string name) => _root.TryGetProperty(name, out _);

    public bool Has(string name) => _root.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null;

    public string? String(string name)
    {
        if (!TryGet(name, out var v))
        {
            return null;
        }
        return v.ValueKind == JsonValueKind.String ? v.GetString() : throw Invalid(name, Describe(v), "a string");
    }

    public int RequiredInt(string name) =>
        OptionalInt(name) ?? throw FormatThrow.Invalid(File, $"field '{name}'", "none", "an integer (the field is required)");

    public int Int(string name, int fallback) => OptionalInt(name) ?? fallback;

    public int? OptionalInt(string name)
    {
        if (!TryGet(name, out var v))
        {
            return null;
        }
        return v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int i) ? i : throw Invalid(name, Describe(v), "an integer");
    }

    public long? OptionalLong(string name)
    {
        if (!TryGet(name, out var v))
        {
            return null;
        }
        return ToLong(name, v);
    }

    /// <summary>An id field that may be a single integer or a list of integers (eos_token_id in Llama 3).</summary>
    public IReadOnlyList<long> LongList(string name)
    {
        if (!TryGet(name, out var v))
        {
            return [];
        }
        if (v.ValueKind == JsonValueKind.Array)
        {
            var list = new List<long>();
            foreach (var item in v.EnumerateArray())
            {
                list.Add(ToLong(name, item));
            }
            return list;
        }
        return [ToLong(name, v)];
    }

    private long ToLong(string name, JsonElement v) =>
        v.ValueKind == JsonValueKind.Number && v.TryGetInt64(out long l) ? l : throw Invalid(name, Describe(v), "an integer");

    public double Double(string name, double fallback) => OptionalDouble(name) ?? fallback;

    public double? OptionalDouble(string name)
    {
        if (!TryGet(name, out var v))
        {
            return null;
        }
        return v.ValueKind == JsonValueKind.Number && v.TryGetDouble(out double d) ? d : throw Invalid(name, Describe(v), "a number");
    }

    public bool Bool(string name, bool fallback)
    {
        if (!TryGet(name, out var v))
        {
            return fallback;
        }
        return v.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw Invalid(name, Describe(v), "true or false"),
        };
    }

    public IReadOnlyList<string> StringList(string name)
    {
        if (!TryGet(name, out var v))
        {
            return [];
        }
        if (v.ValueKind != JsonValueKind.Array)
        {
            throw Invalid(name, Describe(v), "a list of strings");
        }
        var list = new List<string>();
        foreach (var item in v.EnumerateArray())
        {
            list.Add(item.ValueKind == JsonValueKind.String ? item.GetString()! : throw Invalid(name, Describe(item), "a list of strings"));
        }
        return list;
    }

    /// <summary>A nested object, read with its own field names prefixed by "<paramref name="name"/>.".</summary>
    public ConfigJson? Object(string name)
    {
        if (!TryGet(name, out var v))
        {
            return null;
        }
        return v.ValueKind == JsonValueKind.Object ? new ConfigJson(File, v) { Prefix = Prefix + name + "." } : throw Invalid(name, Describe(v), "an object");
    }

    private string Prefix { get; init; } = "";

    /// <summary>The fields nobody read, in file order, as detached copies.</summary>
    public IReadOnlyDictionary<string, JsonElement> Extras()
    {
        var extras = new Dictionary<string, JsonElement>(StringComparer.Ordinal);
        foreach (var p in _root.EnumerateObject())
        {
            if (!_read.Contains(p.Name))
            {
                extras[p.Name] = p.Value.Clone();
            }
        }
        return extras;
    }

    public OnnxLoraException Invalid(string name, string found, string expected) =>
        FormatThrow.Invalid(File, $"field '{Prefix}{name}'", found, expected);

    private static string Describe(JsonElement v) => v.ValueKind switch
    {
        JsonValueKind.String => $"\"{Truncate(v.GetString()!)}\"",
        JsonValueKind.Number => v.GetRawText(),
        JsonValueKind.True => "true",
        JsonValueKind.False => "false",
        JsonValueKind.Array => "a list",
        JsonValueKind.Object => "an object",
        _ => v.ValueKind.ToString(),
    };

    private static string Truncate(string s) => s.Length <= 64 ? s : s[..64] + "...";
}
