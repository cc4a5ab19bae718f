using System.Text;
using Google.FlatBuffers;

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
        var buffer = new ByteBuffer(bytes);
        var verifier = new Verifier(buffer, new Options(maxDepth: 8, maxTables: 1_000_000, stringEndCheck: true, alignmentCheck: true));
        bool verified;
        try
        {
            verified = verifier.VerifyBuffer(FileIdentifier, false, VerifyAdapter);
        }
        catch (Exception e) when (e is OverflowException or ArgumentOutOfRangeException or IndexOutOfRangeException)
        {
            // Google.FlatBuffers 25.2.10's C# verifier converts some forged (negative) offsets with checked
            // casts and throws instead of returning false: the same verdict.
            verified = false;
        }
        if (!verified)
        {
            throw OnnxLoraException.Invalid(file, "FlatBuffer", "an offset, length or alignment outside the file's bounds", "a buffer that passes FlatBuffers verification");
        }
        var root = new Table(buffer.GetInt(buffer.Position) + buffer.Position, buffer);
        int formatVersion = Int(root, AdapterFormatVersion);
        if (formatVersion != CurrentFormatVersion)
        {
            throw OnnxLoraException.Invalid(file, "format_version", formatVersion.ToString(System.Globalization.CultureInfo.InvariantCulture),
                $"{CurrentFormatVersion} (the version ONNX Runtime 1.31 reads)");
        }
        var parameters = new List<OnnxAdapterParameter>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        int at = root.__offset(VtableOffset(AdapterParameters));
        if (at != 0)
        {
            int start = root.__vector(at);
            int count = root.__vector_len(at);
            for (int i = 0; i < count; i++)
            {
                var table = new Table(root.__indirect(start + (i * sizeof(int))), buffer);
                var p = ReadParameter(table, bytes, file, i);
                if (!names.Add(p.Name))
                {
                    throw OnnxLoraException.Invalid(file, $"parameter '{p.Name}'", "a repeated name", "one parameter per graph input");
                }
                parameters.Add(p);
            }
        }
        return new OnnxAdapter(formatVersion, Int(root, AdapterAdapterVersion), Int(root, AdapterModelVersion), parameters);
    }

    private static OnnxAdapterParameter ReadParameter(Table table, byte[] bytes, string file, int index)
    {
        int nameAt = table.__offset(VtableOffset(ParameterName));
        string name = nameAt == 0 ? "" : table.__string(nameAt + table.bb_pos);
        if (name.Length == 0)
        {
            throw OnnxLoraException.Invalid(file, $"parameter #{index} name", "no name", "the name of the graph input it feeds");
        }
        int typeCode = Int(table, ParameterDataType);
        if (!OnnxTensors.TryFromOnnx(typeCode, out var dtype))
        {
            throw OnnxLoraException.Invalid(file, $"parameter '{name}' data_type", typeCode.ToString(System.Globalization.CultureInfo.InvariantCulture),
                "a numeric tensor type (FLOAT, FLOAT16, BFLOAT16, DOUBLE or an integer type)");
        }
        var shape = new List<long>();
        int dimsAt = table.__offset(VtableOffset(ParameterDims));
        if (dimsAt != 0)
        {
            int start = table.__vector(dimsAt);
            int count = table.__vector_len(dimsAt);
            for (int d = 0; d < count; d++)
            {
                shape.Add(table.bb.GetLong(start + (d * sizeof(long))));
            }
        }
        int rawAt = table.__offset(VtableOffset(ParameterRawData));
        int rawStart = rawAt == 0 ? 0 : table.__vector(rawAt);
        int rawLength = rawAt == 0 ? 0 : table.__vector_len(rawAt);
        var parameter = new OnnxAdapterParameter(name, dtype, shape, new ReadOnlyMemory<byte>(bytes, rawStart, rawLength));
        CheckParameter(file, parameter);
        return parameter;
    }

    private static int Int(Table table, int field)
    {
        int at = table.__offset(VtableOffset(field));
        return at == 0 ? 0 : table.bb.GetInt(at + table.bb_pos);
    }

    /// <summary>The vtable entry of field slot <paramref name="field"/> (FlatBuffers: 4 bytes of header, 2 per field).</summary>
    private static short VtableOffset(int field) => (short)(4 + (2 * field));

    private static bool VerifyAdapter(Verifier verifier, uint table) =>
        verifier.VerifyTableStart(table)
        && verifier.VerifyField(table, VtableOffset(AdapterFormatVersion), sizeof(int), sizeof(int), false)
        && verifier.VerifyField(table, VtableOffset(AdapterAdapterVersion), sizeof(int), sizeof(int), false)
        && verifier.VerifyField(table, VtableOffset(AdapterModelVersion), sizeof(int), sizeof(int), false)
        && verifier.VerifyVectorOfTables(table, VtableOffset(AdapterParameters), VerifyParameter, false)
        && verifier.VerifyTableEnd(table);

    private static bool VerifyParameter(Verifier verifier, uint table) =>
        verifier.VerifyTableStart(table)
        && verifier.VerifyString(table, VtableOffset(ParameterName), false)
        && verifier.VerifyVectorOfData(table, VtableOffset(ParameterDims), sizeof(long), false)
        && verifier.VerifyField(table, VtableOffset(ParameterDataType), sizeof(int), sizeof(int), false)
        && verifier.VerifyVectorOfData(table, VtableOffset(ParameterRawData), 1, false)
        && verifier.VerifyTableEnd(table);

    private static string Printable(string s) => $"'{new string(s.Select(c => c is >= ' ' and <= '~' ? c : '?').ToArray())}'";
}
