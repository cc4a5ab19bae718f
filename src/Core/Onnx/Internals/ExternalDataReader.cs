using System.Globalization;
using Google.Protobuf;
using Onnx;
using OnnxLora.Core.Internals;

namespace OnnxLora.Core.Onnx.Internals;

/// <summary>
/// Checks every external-data reference of a loaded model (location inside the model folder, links
/// included; offset and length inside the data file; length matching the dims) and optionally reads
/// the data into raw_data.
/// </summary>
internal static class ExternalDataReader
{
    private sealed record DataFile(string RealPath, long Size);

    public static void Resolve(string modelPath, ModelProto model, bool load)
    {
        var external = ModelValidator.AllTensors(model.Graph).Where(OnnxTensors.IsExternal).ToList();
        if (external.Count == 0)
        {
            return;
        }
        string folder = Path.GetDirectoryName(modelPath)!;
        string realFolder = SafePaths.RealPath(folder);
        var files = new Dictionary<string, DataFile>(StringComparer.Ordinal);
        var streams = new Dictionary<string, FileStream>(StringComparer.Ordinal);
        try
        {
            foreach (var tensor in external)
            {
                var (location, offset, length) = ParseEntries(modelPath, tensor);
                if (!files.TryGetValue(location, out var dataFile))
                {
                    dataFile = Locate(modelPath, tensor, location, folder, realFolder);
                    files.Add(location, dataFile);
                }
                long expected = ExpectedBytes(modelPath, tensor);
                length ??= expected;
                if (length.Value != expected)
                {
                    throw FormatThrow.Invalid(modelPath, $"tensor '{tensor.Name}' external_data length", length.Value.ToString(CultureInfo.InvariantCulture),
                        $"{expected} bytes for {OnnxTensors.DataTypeName(tensor.DataType)} [{string.Join(", ", tensor.Dims)}]");
                }
                if (offset > dataFile.Size || length.Value > dataFile.Size - offset)
                {
                    throw FormatThrow.Invalid(modelPath, $"tensor '{tensor.Name}' external_data offset + length",
                        $"{offset} + {length.Value} in '{location}'", $"at most the data file's size, {dataFile.Size} bytes");
                }
                if (!load)
                {
                    continue;
                }
                if (length.Value > Array.MaxLength)
                {
                    throw FormatThrow.Invalid(modelPath, $"tensor '{tensor.Name}' external_data length", $"{length.Value} bytes",
                        "at most 2 GiB for a tensor loaded into memory");
                }
                if (!streams.TryGetValue(dataFile.RealPath, out var stream))
                {
                    stream = new FileStream(dataFile.RealPath, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
                    streams.Add(dataFile.RealPath, stream);
                }
                byte[] data = new byte[length.Value];
                stream.Position = offset;
                stream.ReadExactly(data);
                OnnxTensors.SetRawData(tensor, UnsafeByteOperations.UnsafeWrap(data));
            }
        }
        finally
        {
            foreach (var stream in streams.Values)
            {
                stream.Dispose();
            }
        }
    }

    private static (string Location, long Offset, long? Length) ParseEntries(string modelPath, TensorProto tensor)
    {
        string? location = null;
        long offset = 0;
        long? length = null;
        foreach (var entry in tensor.ExternalData)
        {
            switch (entry.Key)
            {
                case "location":
                    location = entry.Value;
                    break;
                case "offset":
                    offset = ParseNonNegative(modelPath, tensor, "offset", entry.Value);
                    break;
                case "length":
                    length = ParseNonNegative(modelPath, tensor, "length", entry.Value);
                    break;
                default:
                    // "checksum" and future keys are informational.
                    break;
            }
        }
        if (location is null)
        {
            throw FormatThrow.Invalid(modelPath, $"tensor '{tensor.Name}' external_data", "no 'location' entry", "a location relative to the model folder");
        }
        string? problem = SafePaths.SyntaxProblem(location);
        if (problem is not null)
        {
            throw FormatThrow.Invalid(modelPath, $"tensor '{tensor.Name}' external_data location", $"'{location}' ({problem})", "a relative path inside the model folder");
        }
        return (location, offset, length);
    }

    private static long ParseNonNegative(string modelPath, TensorProto tensor, string key, string value)
    {
        if (!long.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out long result))
        {
            throw FormatThrow.Invalid(modelPath, $"tensor '{tensor.Name}' external_data {key}", $"'{value}'", "a non-negative integer");
        }
        return result;
    }

    private static DataFile Locate(string modelPath, TensorProto tensor, string location, string folder, string realFolder)
    {
        string lexical = Path.GetFullPath(Path.Combine(folder, location));
        string real = SafePaths.RealPath(lexical);
        if (!SafePaths.IsInside(real, realFolder))
        {
            throw FormatThrow.Invalid(modelPath, $"tensor '{tensor.Name}' external_data location",
                $"'{location}', which resolves to '{real}' through a symbolic link", "a file inside the model folder");
        }
        var info = new FileInfo(real);
        if (!info.Exists)
        {
            throw FormatThrow.Invalid(modelPath, $"tensor '{tensor.Name}' external_data location '{location}': data file not found at {lexical}.");
        }
        return new DataFile(real, info.Length);
    }

    private static long ExpectedBytes(string modelPath, TensorProto tensor)
    {
        if (!OnnxTensors.TryFromOnnx(tensor.DataType, out var dtype))
        {
            throw FormatThrow.Invalid(modelPath, $"tensor '{tensor.Name}' data_type", OnnxTensors.DataTypeName(tensor.DataType), "a fixed-size numeric type for external data");
        }
        long count = OnnxTensors.ElementCount(tensor);
        if (count > long.MaxValue / dtype.SizeOf())
        {
            throw FormatThrow.Invalid(modelPath, $"tensor '{tensor.Name}' dims", $"[{string.Join(", ", tensor.Dims)}]", "a byte size that fits in 64 bits");
        }
        return count * dtype.SizeOf();
    }
}
