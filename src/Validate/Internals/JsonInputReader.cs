using System.Text.Json;
using OnnxLora.Core;

namespace OnnxLora.Validate.Internals;

/// <summary>
/// Reads inputs from a JSON file: an object mapping input name to a (nested, rectangular) array of numbers, or a
/// single number for a scalar. Values are converted to the element type the models declare for that input;
/// integers must be integral and in range, booleans true/false or 0/1.
/// </summary>
internal static class JsonInputReader
{
    private const int MaxRank = 8;

    public static IReadOnlyList<InputTensor> Read(string path, IReadOnlyDictionary<string, TensorSignature> declared)
    {
        JsonDocument doc;
        try
        {
            using var stream = File.OpenRead(path);
            doc = JsonDocument.Parse(stream, new JsonDocumentOptions { MaxDepth = MaxRank + 2 });
        }
        catch (JsonException e)
        {
            throw ValidateThrow.Invalid(path, $"not valid JSON: {e.Message}", e);
        }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
            {
                throw ValidateThrow.Invalid(path, "root", doc.RootElement.ValueKind.ToString(), "an object mapping input names to arrays");
            }
            var result = new List<InputTensor>();
            foreach (var property in doc.RootElement.EnumerateObject())
            {
                if (!declared.TryGetValue(property.Name, out var sig))
                {
                    throw ValidateThrow.Invalid(path, $"input {property.Name}", "a name no model declares",
                        $"one of {string.Join(", ", declared.Keys)}");
                }
                result.Add(ReadTensor(path, property.Name, sig.ElementType, property.Value));
            }
            return result;
        }
    }

    private static InputTensor ReadTensor(string path, string name, DType kind, JsonElement value)
    {
        var shape = new List<long>();
        var probe = value;
        while (probe.ValueKind == JsonValueKind.Array)
        {
            if (shape.Count == MaxRank)
            {
                throw ValidateThrow.Invalid(path, $"input {name}", $"more than {MaxRank} nesting levels", $"at most {MaxRank}");
            }
            int length = probe.GetArrayLength();
            shape.Add(length);
            if (length == 0)
            {
                break;
            }
            probe = probe[0];
        }
        long count = 1;
        foreach (long d in shape)
        {
            count *= d;
        }
        var values = new List<JsonElement>((int)Math.Min(count, 1 << 20));
        Flatten(path, name, value, shape, 0, name, values);

        Array data = kind switch
        {
            DType.I64 => values.Select((v, i) => Integer(path, name, i, v, long.MinValue, long.MaxValue)).ToArray(),
            DType.I32 => values.Select((v, i) => (int)Integer(path, name, i, v, int.MinValue, int.MaxValue)).ToArray(),
            DType.F32 => values.Select((v, i) => (float)Number(path, name, i, v)).ToArray(),
            DType.F16 => values.Select((v, i) => (Half)Number(path, name, i, v)).ToArray(),
            DType.Bool => values.Select((v, i) => Boolean(path, name, i, v)).ToArray(),
            _ => throw ValidateThrow.Invalid(path, $"input {name}", kind.ReportName(), "an int64, int32, float32, float16 or bool input"),
        };
        return new InputTensor(name, kind, [.. shape], data, $"json: {path}");
    }

    private static void Flatten(string path, string name, JsonElement e, List<long> shape, int depth, string where, List<JsonElement> into)
    {
        if (depth == shape.Count)
        {
            if (e.ValueKind == JsonValueKind.Array)
            {
                throw ValidateThrow.Invalid(path, $"input {where}", "an array", "a number (the array is ragged)");
            }
            into.Add(e);
            return;
        }
        if (e.ValueKind != JsonValueKind.Array)
        {
            throw ValidateThrow.Invalid(path, $"input {where}", e.ValueKind.ToString(), $"an array of {shape[depth]} elements (the array is ragged)");
        }
        int length = e.GetArrayLength();
        if (length != shape[depth])
        {
            throw ValidateThrow.Invalid(path, $"input {where}", $"{length} elements", $"{shape[depth]} (the array is ragged)");
        }
        int i = 0;
        foreach (var child in e.EnumerateArray())
        {
            Flatten(path, name, child, shape, depth + 1, $"{where}[{i}]", into);
            i++;
        }
    }

    private static long Integer(string path, string name, int index, JsonElement v, long min, long max)
    {
        if (v.ValueKind == JsonValueKind.Number && v.TryGetInt64(out long x) && x >= min && x <= max)
        {
            return x;
        }
        throw ValidateThrow.Invalid(path, $"input {name} element {index}", v.GetRawText(), $"an integer in [{min}, {max}]");
    }

    private static double Number(string path, string name, int index, JsonElement v)
    {
        if (v.ValueKind == JsonValueKind.Number && v.TryGetDouble(out double x) && double.IsFinite(x))
        {
            return x;
        }
        throw ValidateThrow.Invalid(path, $"input {name} element {index}", v.GetRawText(), "a finite number");
    }

    private static bool Boolean(string path, string name, int index, JsonElement v)
    {
        if (v.ValueKind is JsonValueKind.True or JsonValueKind.False)
        {
            return v.GetBoolean();
        }
        if (v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int x) && x is 0 or 1)
        {
            return x == 1;
        }
        throw ValidateThrow.Invalid(path, $"input {name} element {index}", v.GetRawText(), "true, false, 0 or 1");
    }
}
