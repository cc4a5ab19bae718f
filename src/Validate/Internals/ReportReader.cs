using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace OnnxLora.Validate.Internals;

/// <summary>
/// Reads validation.json back (<see cref="ValidationReport.Load"/>): first as a <see cref="JsonDocument"/> to tell
/// broken or truncated JSON and foreign files or other schema versions apart, then through the source-generated
/// <see cref="ReportJsonContext"/> (every field required, nulls only where documented). Every failure is one line
/// naming the file and the field.
/// </summary>
internal static partial class ReportReader
{
    /// <summary>The largest report read (a report with a million samples per model is about 60 MB).</summary>
    private const long MaxBytes = 512L << 20;

    public static ValidationReport Read(string path)
    {
        string full = Path.GetFullPath(path);
        if (!File.Exists(full))
        {
            throw Directory.Exists(full)
                ? ValidateThrow.Invalid(full, "a folder, not a validation report file (validation.json)")
                : OnnxLora.Core.OnnxLoraException.NotFound("validation report", full);
        }
        long length = new FileInfo(full).Length;
        if (length > MaxBytes)
        {
            throw ValidateThrow.Invalid(full, "file size", $"{length} bytes", $"at most {MaxBytes} bytes for a validation report");
        }
        byte[] bytes = File.ReadAllBytes(full);
        if (bytes.Length == 0)
        {
            throw ValidateThrow.Invalid(full, "", "an empty file", $"a JSON validation report (schema {ValidationReport.SchemaId})");
        }

        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(bytes, new JsonDocumentOptions { MaxDepth = 16 });
        }
        catch (JsonException e)
        {
            string at = e.LineNumber is long line ? $" at line {line + 1}, byte {e.BytePositionInLine + 1}" : "";
            string broken = BrokenAt(bytes);
            string field = broken.Length > 0 ? $"field {broken}" : "top level";
            throw ValidateThrow.Invalid(full, field, $"JSON that is truncated or malformed{at} ({FirstSentence(e.Message)})", "a complete JSON validation report");
        }
        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw ValidateThrow.Invalid(full, "top level", $"a JSON {Kind(root)}", $"an object (an OnnxLora validation report, schema {ValidationReport.SchemaId})");
            }
            if (!root.TryGetProperty("schema", out var schema))
            {
                throw ValidateThrow.Invalid(full, "field schema", "none", $"\"{ValidationReport.SchemaId}\" (this is not an OnnxLora validation report)");
            }
            if (schema.ValueKind != JsonValueKind.String || schema.GetString() is not (ValidationReport.SchemaId or ValidationReport.PreviousSchemaId))
            {
                string found = schema.ValueKind == JsonValueKind.String ? $"\"{schema.GetString()}\"" : $"a JSON {Kind(schema)}";
                string why = schema.ValueKind == JsonValueKind.String && schema.GetString()!.StartsWith("onnxlora.validation/", StringComparison.Ordinal)
                    ? $" (another version of the report; {ValidationReport.PreviousSchemaId} is read too, but reports of onnxlora.validation/1 lack the machine fingerprint and model hashes that comparing needs: run validate again to write one)"
                    : " (this is not an OnnxLora validation report)";
                throw ValidateThrow.Invalid(full, "field schema", found, $"\"{ValidationReport.SchemaId}\"{why}");
            }
            try
            {
                var json = root.Deserialize(ReportJson.Context.ReportJson)
                    ?? throw ValidateThrow.Invalid(full, "top level", "null", "an object");
                return json.ToReport();
            }
            catch (JsonException e)
            {
                throw Describe(full, root, e);
            }
        }
    }

    /// <summary>One line from a deserialization error: the field by its documented name, what was there, what was expected.</summary>
    private static Core.OnnxLoraException Describe(string file, JsonElement root, JsonException e)
    {
        string message = FirstSentence(e.Message);
        string path = e.Path ?? "$";
        var missing = MissingProperties().Match(e.Message);
        if (missing.Success)
        {
            string parent = Field(path);
            string names = missing.Groups[1].Value;
            string first = names.Split(',')[0].Trim().Trim('\'');
            return ValidateThrow.Invalid(file, $"field {(parent.Length == 0 ? "" : parent + ".")}{first}", "none",
                $"a value (every field of {ValidationReport.SchemaId} is present; null where it does not apply)");
        }
        if (message.StartsWith("field ", StringComparison.Ordinal))
        {
            // Our own converters' messages already name the field.
            return ValidateThrow.Invalid(file, message);
        }
        string found = Find(root, path) is { } value ? Describe(value) : "nothing";
        string expected = found == "null"
            ? "a value (null is not allowed here)"
            : FieldType(path) is { } type ? Expected(type) : message;
        return ValidateThrow.Invalid(file, $"field {Field(path)}", found, expected);
    }

    /// <summary>
    /// The field whose value the JSON breaks in ("latency.models[1].samplesMs"), found by reading the tokens up to the
    /// error with a path of property names and array indices: <see cref="JsonDocument"/>'s exception carries no path.
    /// </summary>
    private static string BrokenAt(byte[] bytes)
    {
        // The open objects and arrays: the property each sits under, and for arrays the index of the latest element.
        var open = new List<(string? Name, bool IsArray, int Index)>();
        string? property = null;
        var reader = new Utf8JsonReader(bytes, new JsonReaderOptions { MaxDepth = 16 });
        try
        {
            while (reader.Read())
            {
                if (reader.TokenType == JsonTokenType.PropertyName)
                {
                    property = reader.GetString();
                    continue;
                }
                if (reader.TokenType is JsonTokenType.EndObject or JsonTokenType.EndArray)
                {
                    open.RemoveAt(open.Count - 1);
                }
                else
                {
                    if (open.Count > 0 && open[^1].IsArray)
                    {
                        open[^1] = open[^1] with { Index = open[^1].Index + 1 };
                    }
                    if (reader.TokenType is JsonTokenType.StartObject or JsonTokenType.StartArray)
                    {
                        open.Add((property, reader.TokenType == JsonTokenType.StartArray, -1));
                    }
                }
                property = null;
            }
        }
        catch (JsonException)
        {
            // `open` and `property` now lead to where it broke.
        }
        var path = new System.Text.StringBuilder();
        for (int i = 1; i < open.Count; i++)
        {
            path.Append(open[i - 1].IsArray ? $"[{open[i - 1].Index.ToString(CultureInfo.InvariantCulture)}]" : "." + open[i].Name);
        }
        if (property is not null)
        {
            path.Append('.').Append(property);
        }
        return path.ToString().TrimStart('.');
    }

    /// <summary>"$.latency.models[0].p50Ms" → "latency.models[0].p50Ms".</summary>
    internal static string Field(string jsonPath) => jsonPath.StartsWith("$.", StringComparison.Ordinal) ? jsonPath[2..] : jsonPath.TrimStart('$');

    /// <summary>The element at a System.Text.Json path of the simple form ($.a.b[0].c), or null.</summary>
    private static JsonElement? Find(JsonElement root, string path)
    {
        var current = root;
        foreach (Match step in PathStep().Matches(path))
        {
            if (step.Groups["name"].Success)
            {
                if (current.ValueKind != JsonValueKind.Object || !current.TryGetProperty(step.Groups["name"].Value, out current))
                {
                    return null;
                }
            }
            else
            {
                int index = int.Parse(step.Groups["index"].Value, CultureInfo.InvariantCulture);
                if (current.ValueKind != JsonValueKind.Array || index >= current.GetArrayLength())
                {
                    return null;
                }
                current = current[index];
            }
        }
        return current;
    }

    private static string Describe(JsonElement value)
    {
        string raw = value.GetRawText();
        raw = raw.Length <= 60 ? raw : raw[..57] + "...";
        return value.ValueKind is JsonValueKind.Object or JsonValueKind.Array ? $"a JSON {Kind(value)}" : raw.ReplaceLineEndings(" ");
    }

    private static string Kind(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.Object => "object",
        JsonValueKind.Array => "array",
        JsonValueKind.String => "string",
        JsonValueKind.Number => "number",
        JsonValueKind.True or JsonValueKind.False => "boolean",
        _ => "null",
    };

    /// <summary>
    /// The .NET type of the field at a System.Text.Json path, from the source-generated metadata of
    /// <see cref="ReportJson"/> (System.Text.Json names the record being built, not the field, when a constructor
    /// parameter fails).
    /// </summary>
    private static Type? FieldType(string jsonPath)
    {
        Type? type = typeof(ReportJson);
        foreach (Match step in PathStep().Matches(jsonPath))
        {
            if (type is null)
            {
                return null;
            }
            if (step.Groups["name"].Success)
            {
                type = ReportJson.Context.GetTypeInfo(type)?.Properties.FirstOrDefault(p => p.Name == step.Groups["name"].Value)?.PropertyType;
            }
            else
            {
                type = type.IsArray ? type.GetElementType()
                    : type.GetInterfaces().Append(type).FirstOrDefault(i => i.IsGenericType && i.GetGenericTypeDefinition() == typeof(IEnumerable<>))?.GetGenericArguments()[0];
            }
        }
        return type;
    }

    /// <summary>What a field of this type holds, as the report's documentation says it.</summary>
    private static string Expected(Type type)
    {
        type = Nullable.GetUnderlyingType(type) ?? type;
        if (type == typeof(Core.DType))
        {
            return "one of " + string.Join(", ", Enum.GetValues<Core.DType>().Select(d => $"\"{d.ReportName()}\""));
        }
        if (type.IsEnum)
        {
            return "one of " + string.Join(", ", Enum.GetNames(type).Select(n => $"\"{JsonNamingPolicy.CamelCase.ConvertName(n)}\""));
        }
        if (type == typeof(double) || type == typeof(float))
        {
            return "a number";
        }
        if (type == typeof(int) || type == typeof(long))
        {
            return "an integer";
        }
        if (type == typeof(string))
        {
            return "a string";
        }
        if (type == typeof(bool))
        {
            return "true or false";
        }
        return type != typeof(string) && type.GetInterfaces().Any(i => i == typeof(System.Collections.IEnumerable)) ? "an array" : "an object";
    }

    private static string FirstSentence(string message)
    {
        int pathAt = message.IndexOf(" Path: ", StringComparison.Ordinal);
        string m = pathAt > 0 ? message[..pathAt] : message;
        int lineAt = m.IndexOf(" LineNumber: ", StringComparison.Ordinal);
        m = lineAt > 0 ? m[..lineAt] : m;
        return m.ReplaceLineEndings(" ").Trim().TrimEnd('.');
    }

    [GeneratedRegex(@"missing required properties,? including:? (.+?)\.?( Path:|$)")]
    private static partial Regex MissingProperties();

    [GeneratedRegex(@"\.(?<name>[A-Za-z_][A-Za-z0-9_]*)|\[(?<index>\d+)\]|\['(?<name>[^']*)'\]")]
    private static partial Regex PathStep();
}
