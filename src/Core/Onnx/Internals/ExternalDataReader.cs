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
    /// <summary>A data file a model refers to: its real path (links resolved) and its size.</summary>
    public sealed record DataFile(string RealPath, long Size);

    /// <summary>Where one external tensor's bytes are: <paramref name="Length"/> bytes at <paramref name="Offset"/> of <paramref name="File"/>.</summary>
    public sealed record Range(TensorProto Tensor, string Location, DataFile File, long Offset, long Length);

    public static void Resolve(string modelPath, ModelProto model, bool load)
    {
        var ranges = Ranges(modelPath, model);
        if (!load || ranges.Count == 0)
        {
            return;
        }
        var streams = new Dictionary<string, FileStream>(StringComparer.Ordinal);
        try
        {
            foreach (var r in ranges)
            {
                if (r.Length > Array.MaxLength)
                {
                    throw FormatThrow.Invalid(modelPath, $"tensor '{r.Tensor.Name}' external_data length", $"{r.Length} bytes",
                        "at most 2 GiB for a tensor loaded into memory (merging streams larger tensors without loading them)");
                }
                if (!streams.TryGetValue(r.File.RealPath, out var stream))
                {
                    stream = new FileStream(r.File.RealPath, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
                    streams.Add(r.File.RealPath, stream);
                }
                byte[] data = new byte[r.Length];
                stream.Position = r.Offset;
                stream.ReadExactly(data);
                OnnxTensors.SetRawData(r.Tensor, UnsafeByteOperations.UnsafeWrap(data));
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

    /// <summary>
    /// Every external tensor's range, checked: location inside the model folder (links followed), offset and length
    /// (64-bit) inside the data file, length matching the dims, and no two tensors sharing bytes.
    /// </summary>
    public static List<Range> Ranges(string modelPath, ModelProto model)
    {
        var ranges = new List<Range>();
        var external = ModelValidator.AllTensors(model.Graph).Where(OnnxTensors.IsExternal).ToList();
        if (external.Count == 0)
        {
            return ranges;
        }
        string folder = Path.GetDirectoryName(modelPath)!;
        string realFolder = SafePaths.RealPath(folder);
        var files = new Dictionary<string, DataFile>(StringComparer.Ordinal);
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
            ranges.Add(new Range(tensor, location, dataFile, offset, length.Value));
        }
        CheckNoOverlap(modelPath, ranges);
        return ranges;
    }

    /// <summary>
    /// Two tensors whose bytes overlap are rejected: no exporter writes them, and a merge that rewrites one tensor's
    /// bytes in place would silently change the other.
    /// </summary>
    private static void CheckNoOverlap(string modelPath, List<Range> ranges)
    {
        var sorted = ranges.Where(r => r.Length > 0)
            .OrderBy(r => r.File.RealPath, StringComparer.Ordinal).ThenBy(r => r.Offset).ToList();
        for (int i = 1; i < sorted.Count; i++)
        {
            var (before, r) = (sorted[i - 1], sorted[i]);
            if (before.File.RealPath == r.File.RealPath && r.Offset < before.Offset + before.Length)
            {
                throw FormatThrow.Invalid(modelPath, $"tensor '{r.Tensor.Name}' external_data offset",
                    $"[{r.Offset}, {r.Offset + r.Length}) in '{r.Location}', overlapping tensor '{before.Tensor.Name}' [{before.Offset}, {before.Offset + before.Length})",
                    "tensors whose bytes do not overlap");
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
