using System.Text;
using System.Text.Json;
using OnnxLora.Core.Internals;
using OnnxLora.Core.IO;

namespace OnnxLora.Core.HuggingFace;

/// <summary>
/// A Hugging Face <c>config.json</c>. <see cref="Load"/> reads the file, picks the family from
/// <c>model_type</c> (<see cref="LlamaConfig"/> for llama, mistral and qwen2; <see cref="BertConfig"/>
/// for bert) and validates it. Fields this project does not interpret are kept in
/// <see cref="ExtraFields"/> so <see cref="Save"/> writes them back unchanged.
/// </summary>
public abstract record HfConfig
{
    /// <summary>The file name inside a checkpoint folder.</summary>
    public const string FileName = "config.json";

    /// <summary>Largest config.json accepted, in bytes.</summary>
    public const long MaxFileBytes = 16 << 20;

    /// <summary>The <c>model_type</c> field ("llama", "mistral", "qwen2", "bert").</summary>
    public abstract string ModelType { get; init; }

    /// <summary>The <c>architectures</c> field (e.g. "LlamaForCausalLM"); empty when absent.</summary>
    public IReadOnlyList<string> Architectures { get; init; } = [];

    /// <summary>The <c>torch_dtype</c> (or newer <c>dtype</c>) field, e.g. "bfloat16"; null when absent.</summary>
    public string? TorchDtype { get; init; }

    /// <summary>Fields not interpreted here, kept verbatim for <see cref="Save"/>.</summary>
    public IReadOnlyDictionary<string, JsonElement> ExtraFields { get; init; } = new Dictionary<string, JsonElement>();

    /// <summary>Where the config was read from, or null for one built in code. Used in error messages.</summary>
    public string? SourcePath { get; init; }

    /// <summary>The model types <see cref="Load"/> understands.</summary>
    public static IReadOnlyList<string> SupportedModelTypes { get; } = ["llama", "mistral", "qwen2", "bert"];

    /// <summary>Reads and validates <paramref name="dirOrFile"/> (a checkpoint folder, or the config.json itself).</summary>
    /// <exception cref="OnnxLoraException">Bad input: no config.json there, malformed JSON, a wrong field type, an invalid value or an
    /// unsupported model type; the message names the file and the field.</exception>
    public static HfConfig Load(string dirOrFile)
    {
        string file = ResolvePath(dirOrFile);
        var info = new FileInfo(file);
        if (info.Length > MaxFileBytes)
        {
            throw FormatThrow.Invalid(file, "file length", $"{info.Length} bytes", $"at most {MaxFileBytes} bytes for a config.json");
        }
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(File.ReadAllBytes(file), new JsonDocumentOptions { MaxDepth = 32, CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
        }
        catch (JsonException e)
        {
            throw FormatThrow.Invalid(file, $"not valid JSON ({e.Message})", e);
        }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
            {
                throw FormatThrow.Invalid(file, "top level", doc.RootElement.ValueKind.ToString(), "a JSON object");
            }
            var json = new ConfigJson(file, doc.RootElement);
            string modelType = json.String("model_type") ?? throw FormatThrow.Invalid(file, "field 'model_type'", "none", $"one of {string.Join(", ", SupportedModelTypes)}");
            HfConfig config = modelType switch
            {
                "llama" or "mistral" or "qwen2" => LlamaConfig.Read(json, modelType),
                "bert" => BertConfig.Read(json),
                _ => throw FormatThrow.Invalid(file, "field 'model_type'", $"\"{modelType}\"", $"one of {string.Join(", ", SupportedModelTypes)}"),
            };
            config = config with
            {
                Architectures = json.StringList("architectures"),
                TorchDtype = json.String("torch_dtype") ?? json.String("dtype"),
                SourcePath = file,
            };
            config = config with { ExtraFields = json.Extras() };
            config.Validate();
            return config;
        }
    }

    /// <summary>The config.json path for a folder or file argument.</summary>
    public static string ResolvePath(string dirOrFile)
    {
        string full = Path.GetFullPath(dirOrFile);
        if (Directory.Exists(full))
        {
            string file = Path.Combine(full, FileName);
            return File.Exists(file) ? file : throw FormatThrow.Invalid(full, $"no {FileName} in the checkpoint folder.");
        }
        return File.Exists(full) ? full : throw OnnxLoraException.NotFound("config file", full);
    }

    /// <summary>
    /// Checks every value (positive sizes, divisible head counts, finite positive epsilons, supported
    /// activations). Called by <see cref="Load"/>; call it on configs built in code before using them.
    /// </summary>
    /// <exception cref="OnnxLoraException">Bad input: a field is invalid; the message names the file (or the record type) and the field.</exception>
    public abstract void Validate();

    /// <summary>Writes config.json atomically: to <paramref name="dirOrFile"/>/config.json when it is a folder, else to that file.</summary>
    /// <exception cref="OnnxLoraException">Bad input: the file exists and <paramref name="overwrite"/> is false.</exception>
    public void Save(string dirOrFile, bool overwrite = false)
    {
        string full = Path.GetFullPath(dirOrFile);
        string file = Directory.Exists(full) || dirOrFile.EndsWith(Path.DirectorySeparatorChar) ? Path.Combine(full, FileName) : full;
        byte[] bytes = Encoding.UTF8.GetBytes(ToJson());
        using var output = AtomicFile.Create(file, overwrite);
        output.Stream.Write(bytes);
        output.Commit();
    }

    /// <summary>The config as indented JSON (as <see cref="Save"/> writes it).</summary>
    public string ToJson()
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            if (Architectures.Count > 0)
            {
                w.WriteStartArray("architectures");
                foreach (string a in Architectures)
                {
                    w.WriteStringValue(a);
                }
                w.WriteEndArray();
            }
            w.WriteString("model_type", ModelType);
            var written = new HashSet<string>(StringComparer.Ordinal) { "architectures", "model_type", "torch_dtype", "dtype" };
            WriteFamilyFields(new FieldWriter(w, written));
            if (TorchDtype is not null)
            {
                w.WriteString("torch_dtype", TorchDtype);
            }
            foreach (var (name, value) in ExtraFields)
            {
                if (!written.Contains(name))
                {
                    w.WritePropertyName(name);
                    value.WriteTo(w);
                }
            }
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(buffer.ToArray()) + "\n";
    }

    /// <summary>Writes the family's own fields.</summary>
    private protected abstract void WriteFamilyFields(FieldWriter w);

    /// <summary>The name used in validation errors: the file, or the record type for configs built in code.</summary>
    private protected string Source => SourcePath ?? $"<{GetType().Name} built in code>";

    private protected OnnxLoraException Invalid(string field, string found, string expected) =>
        FormatThrow.Invalid(Source, $"field '{field}'", found, expected);

    private protected void RequirePositive(string field, long value)
    {
        if (value <= 0)
        {
            throw Invalid(field, value.ToString(System.Globalization.CultureInfo.InvariantCulture), "a positive integer");
        }
    }

    private protected void RequirePositiveFinite(string field, double value)
    {
        if (!(value > 0) || !double.IsFinite(value))
        {
            throw Invalid(field, value.ToString("R", System.Globalization.CultureInfo.InvariantCulture), "a finite number > 0");
        }
    }

    private protected void RequireProbability(string field, double value)
    {
        if (!(value >= 0 && value < 1))
        {
            throw Invalid(field, value.ToString("R", System.Globalization.CultureInfo.InvariantCulture), "a probability in [0, 1)");
        }
    }

    private protected void RequireTorchDtype()
    {
        if (TorchDtype is not null && TorchDtype != "auto" && !DTypes.TryParseTorchName(TorchDtype, out _))
        {
            throw Invalid("torch_dtype", $"\"{TorchDtype}\"", "float32, float16, bfloat16 or float64");
        }
    }

    /// <summary>Writes named fields and records their names so extras with the same name are not written twice.</summary>
    internal sealed class FieldWriter(Utf8JsonWriter writer, HashSet<string> written)
    {
        public void Number(string name, long value)
        {
            written.Add(name);
            writer.WriteNumber(name, value);
        }

        public void Number(string name, double value)
        {
            written.Add(name);
            writer.WriteNumber(name, value);
        }

        public void NumberOrNull(string name, long? value)
        {
            written.Add(name);
            if (value is long v)
            {
                writer.WriteNumber(name, v);
            }
            else
            {
                writer.WriteNull(name);
            }
        }

        public void Bool(string name, bool value)
        {
            written.Add(name);
            writer.WriteBoolean(name, value);
        }

        public void String(string name, string value)
        {
            written.Add(name);
            writer.WriteString(name, value);
        }

        /// <summary>One id as a number, several as a list, none as null.</summary>
        public void Ids(string name, IReadOnlyList<long> ids)
        {
            written.Add(name);
            if (ids.Count == 0)
            {
                writer.WriteNull(name);
            }
            else if (ids.Count == 1)
            {
                writer.WriteNumber(name, ids[0]);
            }
            else
            {
                writer.WriteStartArray(name);
                foreach (long id in ids)
                {
                    writer.WriteNumberValue(id);
                }
                writer.WriteEndArray();
            }
        }

        public void Object(string name, Action<FieldWriter> body)
        {
            written.Add(name);
            writer.WriteStartObject(name);
            body(new FieldWriter(writer, []));
            writer.WriteEndObject();
        }
    }
}
