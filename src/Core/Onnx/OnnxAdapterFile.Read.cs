using System.Buffers.Binary;
using System.Text;
using OnnxLora.Core.Onnx.Internals;

namespace OnnxLora.Core.Onnx;

public static partial class OnnxAdapterFile
{
    /// <summary>Reads and verifies an adapter file.</summary>
    /// <exception cref="OnnxLoraException">Bad input: the file is missing, is not an adapter file, fails FlatBuffers
    /// verification (an offset or length outside the file), has a format version other than 1, or a parameter is malformed
    /// (the message names the file and the parameter).</exception>
    public static OnnxAdapter Read(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        var info = new FileInfo(path);
        if (!info.Exists)
        {
            throw OnnxLoraException.NotFound("ONNX Runtime adapter file", path);
        }
        if (info.Length >= int.MaxValue)
        {
            throw OnnxLoraException.Invalid(path, "file size", $"{info.Length} bytes", "under 2 GiB (FlatBuffers' limit for one buffer)");
        }
        return Parse(File.ReadAllBytes(path), path);
    }

    /// <summary>Parses and verifies adapter file bytes; <paramref name="file"/> names the source in errors.</summary>
    /// <inheritdoc cref="Read" path="/exception"/>
    public static OnnxAdapter Parse(byte[] bytes, string file)
    {
        ArgumentNullException.ThrowIfNull(bytes);
        if (bytes.Length < 8)
        {
            throw OnnxLoraException.Invalid(file, "file size", $"{bytes.Length} bytes", "an ONNX Runtime adapter FlatBuffer (at least 8 bytes)");
        }
        string identifier = Encoding.ASCII.GetString(bytes, 4, 4);
        if (identifier != FileIdentifier)
        {
            throw OnnxLoraException.Invalid(file, "file identifier", Printable(identifier), $"'{FileIdentifier}' (an ONNX Runtime .onnx_adapter file)");
        }
        var reader = new FlatBufferReader(bytes, file);
        int root = reader.Table(reader.Root(), "Adapter table");
        int formatVersion = reader.Int(root, AdapterFormatVersion, "format_version");
        if (formatVersion != CurrentFormatVersion)
        {
            throw OnnxLoraException.Invalid(file, "format_version", formatVersion.ToString(System.Globalization.CultureInfo.InvariantCulture),
                $"{CurrentFormatVersion} (the version ONNX Runtime 1.31 reads)");
        }
        var parameters = new List<OnnxAdapterParameter>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        var (start, count) = reader.VectorField(root, AdapterParameters, sizeof(int), sizeof(int), "parameters");
        for (int i = 0; i < count; i++)
        {
            int table = reader.Table(reader.Deref(start + (i * sizeof(int)), $"parameter #{i}"), $"parameter #{i}");
            var p = ReadParameter(reader, table, bytes, file, i);
            if (!names.Add(p.Name))
            {
                throw OnnxLoraException.Invalid(file, $"parameter '{p.Name}'", "a repeated name", "one parameter per graph input");
            }
            parameters.Add(p);
        }
        return new OnnxAdapter(formatVersion, reader.Int(root, AdapterAdapterVersion, "adapter_version"), reader.Int(root, AdapterModelVersion, "model_version"), parameters);
    }

    private static OnnxAdapterParameter ReadParameter(FlatBufferReader reader, int table, byte[] bytes, string file, int index)
    {
        string name = reader.String(table, ParameterName, $"parameter #{index} name") ?? "";
        if (name.Length == 0)
        {
            throw OnnxLoraException.Invalid(file, $"parameter #{index} name", "no name", "the name of the graph input it feeds");
        }
        int typeCode = reader.Int(table, ParameterDataType, $"parameter '{name}' data_type");
        if (!OnnxTensors.TryFromOnnx(typeCode, out var dtype))
        {
            throw OnnxLoraException.Invalid(file, $"parameter '{name}' data_type", typeCode.ToString(System.Globalization.CultureInfo.InvariantCulture),
                "a numeric tensor type (FLOAT, FLOAT16, BFLOAT16, DOUBLE or an integer type)");
        }
        var (dimsStart, dimsCount) = reader.VectorField(table, ParameterDims, sizeof(long), sizeof(long), $"parameter '{name}' dims");
        var shape = new long[dimsCount];
        for (int d = 0; d < dimsCount; d++)
        {
            shape[d] = BinaryPrimitives.ReadInt64LittleEndian(bytes.AsSpan(dimsStart + (d * sizeof(long))));
        }
        // raw_data is declared (force_align: 8): its bytes start 8-aligned, as ONNX Runtime maps them in place.
        var (rawStart, rawLength) = reader.VectorField(table, ParameterRawData, 1, 1, $"parameter '{name}' raw_data");
        if (rawLength > 0 && rawStart % 8 != 0)
        {
            throw OnnxLoraException.Invalid(file, $"parameter '{name}' raw_data", $"offset {rawStart}", "a multiple of 8 (force_align: 8)");
        }
        var parameter = new OnnxAdapterParameter(name, dtype, shape, new ReadOnlyMemory<byte>(bytes, rawStart, rawLength));
        CheckParameter(file, parameter);
        return parameter;
    }

    private static string Printable(string s) => $"'{new string(s.Select(c => c is >= ' ' and <= '~' ? c : '?').ToArray())}'";
}
