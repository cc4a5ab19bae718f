using System.Text;
using System.Text.Json;
using OnnxLora.Core.Internals;

namespace OnnxLora.Core.Safetensors;

public sealed partial class SafetensorsFile
{
    /// <summary>
    /// Parses and validates the JSON header. Everything declared is checked against the real data
    /// length before anything is allocated from it: offsets inside the data, no overlaps, no holes,
    /// byte length equal to shape × dtype size (with overflow checks), no duplicate names.
    /// </summary>
    internal static (List<TensorInfo> Tensors, Dictionary<string, string> Metadata) ParseHeader(
        string file, ReadOnlySpan<byte> json, long dataLength, SafetensorsLimits limits)
    {
        var tensors = new List<TensorInfo>();
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        var names = new HashSet<string>(StringComparer.Ordinal);
        var reader = new Utf8JsonReader(json, new JsonReaderOptions { MaxDepth = 8 });
        try
        {
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            {
                throw FormatThrow.Invalid(file, "header", Describe(reader), "a JSON object");
            }
            while (reader.Read() && reader.TokenType != JsonTokenType.EndObject)
            {
                string name = reader.GetString()!;
                if (!names.Add(name))
                {
                    throw FormatThrow.Invalid(file, $"header declares '{name}' twice");
                }
                reader.Read();
                if (name == "__metadata__")
                {
                    ReadMetadata(file, ref reader, metadata);
                    continue;
                }
                if (tensors.Count >= limits.MaxTensors)
                {
                    throw FormatThrow.Invalid(file, "tensor count", $"more than {limits.MaxTensors}", $"at most {limits.MaxTensors}");
                }
                tensors.Add(ReadTensor(file, name, ref reader, dataLength, limits));
            }
            if (reader.TokenType != JsonTokenType.EndObject)
            {
                throw FormatThrow.Invalid(file, "header JSON ends early");
            }
        }
        catch (JsonException e)
        {
            throw FormatThrow.Invalid(file, $"header is not valid UTF-8 JSON ({e.Message})", e);
        }
        catch (InvalidOperationException e)
        {
            throw FormatThrow.Invalid(file, $"header has an unexpected JSON value ({e.Message})", e);
        }

        CheckCoverage(file, tensors, dataLength);
        return (tensors, metadata);
    }

    private static void ReadMetadata(string file, ref Utf8JsonReader reader, Dictionary<string, string> metadata)
    {
        if (reader.TokenType == JsonTokenType.Null)
        {
            return;
        }
        if (reader.TokenType != JsonTokenType.StartObject)
        {
            throw FormatThrow.Invalid(file, "__metadata__", Describe(reader), "an object of strings");
        }
        while (reader.Read() && reader.TokenType != JsonTokenType.EndObject)
        {
            string key = reader.GetString()!;
            reader.Read();
            if (reader.TokenType != JsonTokenType.String)
            {
                throw FormatThrow.Invalid(file, $"__metadata__['{key}']", Describe(reader), "a string");
            }
            if (!metadata.TryAdd(key, reader.GetString()!))
            {
                throw FormatThrow.Invalid(file, $"__metadata__ declares '{key}' twice");
            }
        }
    }

    private static TensorInfo ReadTensor(string file, string name, ref Utf8JsonReader reader, long dataLength, SafetensorsLimits limits)
    {
        if (reader.TokenType != JsonTokenType.StartObject)
        {
            throw FormatThrow.Invalid(file, $"tensor '{name}'", Describe(reader), "an object with dtype, shape and data_offsets");
        }
        string? dtypeName = null;
        List<long>? shape = null;
        long begin = -1, end = -1;
        while (reader.Read() && reader.TokenType != JsonTokenType.EndObject)
        {
            string field = reader.GetString()!;
            reader.Read();
            switch (field)
            {
                case "dtype":
                    if (reader.TokenType != JsonTokenType.String)
                    {
                        throw FormatThrow.Invalid(file, $"tensor '{name}' dtype", Describe(reader), "a string");
                    }
                    dtypeName = reader.GetString();
                    break;
                case "shape":
                    shape = ReadLongArray(file, name, "shape", ref reader, limits.MaxRank);
                    break;
                case "data_offsets":
                    var offsets = ReadLongArray(file, name, "data_offsets", ref reader, 2);
                    if (offsets.Count != 2)
                    {
                        throw FormatThrow.Invalid(file, $"tensor '{name}' data_offsets", $"{offsets.Count} numbers", "[begin, end]");
                    }
                    (begin, end) = (offsets[0], offsets[1]);
                    break;
                default:
                    reader.Skip();
                    break;
            }
        }
        if (dtypeName is null || shape is null || begin < 0)
        {
            throw FormatThrow.Invalid(file, $"tensor '{name}'", "a missing field", "dtype, shape and data_offsets");
        }
        if (!DTypes.TryParseSafetensorsName(dtypeName, out DType dtype))
        {
            throw FormatThrow.Invalid(file, $"tensor '{name}' dtype", $"'{dtypeName}'", "one of F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL");
        }
        if (end < begin || end > dataLength)
        {
            throw FormatThrow.Invalid(file, $"tensor '{name}' data_offsets", $"[{begin}, {end}]", $"0 <= begin <= end <= {dataLength} (the data section's length)");
        }
        var spec = new TensorSpec(name, dtype, shape.ToArray());
        long expected;
        try
        {
            expected = spec.ByteLength;
        }
        catch (OverflowException)
        {
            throw FormatThrow.Invalid(file, $"tensor '{name}' shape", spec.ShapeText, "a shape whose byte size fits in 64 bits");
        }
        if (expected != end - begin)
        {
            throw FormatThrow.Invalid(file, $"tensor '{name}' byte length", $"{end - begin} bytes in data_offsets",
                $"{expected} bytes for {dtypeName} {spec.ShapeText}");
        }
        return new TensorInfo(spec, begin, end - begin);
    }

    private static List<long> ReadLongArray(string file, string name, string field, ref Utf8JsonReader reader, int maxCount)
    {
        if (reader.TokenType != JsonTokenType.StartArray)
        {
            throw FormatThrow.Invalid(file, $"tensor '{name}' {field}", Describe(reader), "an array of non-negative integers");
        }
        var values = new List<long>();
        while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
        {
            if (reader.TokenType != JsonTokenType.Number || !reader.TryGetInt64(out long v) || v < 0)
            {
                throw FormatThrow.Invalid(file, $"tensor '{name}' {field}", Describe(reader), "non-negative 64-bit integers");
            }
            if (values.Count == maxCount)
            {
                throw FormatThrow.Invalid(file, $"tensor '{name}' {field}", $"more than {maxCount} entries", $"at most {maxCount}");
            }
            values.Add(v);
        }
        return values;
    }

    private static void CheckCoverage(string file, List<TensorInfo> tensors, long dataLength)
    {
        var byOffset = tensors.OrderBy(t => t.DataOffset).ThenBy(t => t.ByteLength).ToList();
        long position = 0;
        foreach (var t in byOffset)
        {
            if (t.DataOffset < position)
            {
                throw FormatThrow.Invalid(file, $"tensor '{t.Name}' data_offsets",
                    $"[{t.DataOffset}, {t.DataOffset + t.ByteLength}] overlapping the tensor before it (which ends at {position})", "tensors that do not overlap");
            }
            if (t.DataOffset > position)
            {
                throw FormatThrow.Invalid(file, $"tensor '{t.Name}' data_offsets",
                    $"a gap of {t.DataOffset - position} bytes before it", "tensors packed without holes");
            }
            position = t.DataOffset + t.ByteLength;
        }
        if (position != dataLength)
        {
            throw FormatThrow.Invalid(file, "data section", $"{dataLength} bytes", $"{position} bytes, the sum of the declared tensors");
        }
    }

    private static string Describe(Utf8JsonReader reader) => reader.TokenType switch
    {
        JsonTokenType.String => $"the string \"{Truncate(reader.GetString())}\"",
        JsonTokenType.Number => $"the number {Encoding.UTF8.GetString(reader.ValueSpan)}",
        JsonTokenType.None => "nothing",
        _ => reader.TokenType.ToString(),
    };

    private static string Truncate(string? s) => s is null ? "" : s.Length <= 40 ? s : s[..40] + "…";
}
