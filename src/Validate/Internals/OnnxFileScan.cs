using System.Text;
using Google.Protobuf;
using Google.Protobuf.Collections;
using Google.Protobuf.Reflection;
using static Google.Protobuf.WireFormat;

namespace OnnxLora.Validate.Internals;

/// <summary>
/// Reads the few facts Validate needs from an .onnx file without materialising its weights: the external data files
/// its initializers reference, the dims of each initializer and which initializers Gather nodes index. Google.Protobuf's
/// <see cref="CodedInputStream"/> reads the fields it wants (ModelProto.graph = 7; GraphProto.node = 1,
/// initializer = 5; NodeProto.input = 1, op_type = 4; TensorProto.dims = 1, name = 8, external_data = 13 with
/// key = 1/value = 2) and skips every other one through its 4 KiB buffer, so embedded raw_data of any size costs no
/// memory (it is read past, not held). Initializers inside subgraphs are not visited.
/// </summary>
/// <remarks>
/// Limits, set deliberately: a protobuf message is at most 2 GiB (<see cref="int.MaxValue"/> bytes; larger models
/// keep their weights in external data files, whose offsets this scan does not read), so a larger file is
/// rejected before reading; the recursion limit is the depth of the deepest message entered (ModelProto → graph →
/// initializer → external_data entry). Lengths are read as protobuf's C# runtime reads them (32 bits); ONNX Runtime
/// has loaded the model before Validate scans it, and it rejects lengths beyond 2 GiB.
/// </remarks>
internal sealed class OnnxFileScan
{
    private const int MaxDims = 64;
    private const int MaxDepth = 3;

    private static readonly uint ModelGraph = MakeTag(7, WireType.LengthDelimited);
    private static readonly uint GraphNode = MakeTag(1, WireType.LengthDelimited);
    private static readonly uint GraphInitializer = MakeTag(5, WireType.LengthDelimited);
    private static readonly uint NodeInput = MakeTag(1, WireType.LengthDelimited);
    private static readonly uint NodeOpType = MakeTag(4, WireType.LengthDelimited);
    private static readonly uint TensorDims = MakeTag(1, WireType.Varint);
    private static readonly uint TensorDimsPacked = MakeTag(1, WireType.LengthDelimited);
    private static readonly uint TensorName = MakeTag(8, WireType.LengthDelimited);
    private static readonly uint TensorExternalData = MakeTag(13, WireType.LengthDelimited);
    private static readonly uint EntryKey = MakeTag(1, WireType.LengthDelimited);
    private static readonly uint EntryValue = MakeTag(2, WireType.LengthDelimited);
    private static readonly FieldCodec<long> DimsCodec = FieldCodec.ForInt64(TensorDims);

    private readonly string _file;
    private readonly CodedInputStream _input;
    private readonly HashSet<string> _external = new(StringComparer.Ordinal);
    private readonly Dictionary<string, long[]> _dims = new(StringComparer.Ordinal);
    private readonly List<(string Data, string Indices)> _gathers = [];

    /// <summary>The field being read (0 while reading a tag) and the byte its tag starts at, for error messages.</summary>
    private int _field;
    private long _fieldStart;

    private OnnxFileScan(string file, CodedInputStream input)
    {
        _file = file;
        _input = input;
    }

    /// <summary>External data files as the model names them (relative to the model's folder).</summary>
    public IReadOnlyCollection<string> ExternalLocations => _external;

    /// <summary>Some initializer has external_data entries (with or without a usable location).</summary>
    public bool HasExternalData { get; private set; }

    public IReadOnlyDictionary<string, long[]> InitializerDims => _dims;

    public IReadOnlyList<(string Data, string Indices)> Gathers => _gathers;

    /// <exception cref="InvalidDataException">The file is not a well-formed protobuf message of at most 2 GiB.</exception>
    public static OnnxFileScan Read(string path)
    {
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        if (fs.Length > int.MaxValue)
        {
            throw ValidateThrow.Invalid(path, "file size", $"{fs.Length} bytes",
                $"at most {int.MaxValue} bytes, protobuf's limit for one message (larger models keep their weights in external data files)");
        }
        using var input = CodedInputStream.CreateWithLimits(fs, int.MaxValue, MaxDepth);
        var scan = new OnnxFileScan(path, input);
        try
        {
            scan.Fields(tag => tag == ModelGraph && scan.Message(scan.GraphField));
        }
        catch (InvalidProtocolBufferException e)
        {
            string field = scan._field == 0 ? "protobuf tag" : $"protobuf field {scan._field}";
            throw ValidateThrow.Invalid(path, $"{field} at byte {scan._fieldStart}",
                $"a malformed or truncated field ({e.Message.Split(". ")[0].TrimEnd('.')})", "a well-formed ONNX ModelProto");
        }
        return scan;
    }

    /// <summary>Rows of the rank-2 initializer that a Gather indexes with graph input <paramref name="ids"/>, if any.</summary>
    public long? EmbeddingRows(string ids)
    {
        foreach (var (data, indices) in _gathers)
        {
            if (indices == ids && _dims.TryGetValue(data, out var d) && d.Length == 2 && d[0] > 0)
            {
                return d[0];
            }
        }
        return null;
    }

    private bool GraphField(uint tag)
    {
        if (tag == GraphNode)
        {
            var inputs = new List<string>();
            string op = "";
            Message(t =>
            {
                if (t == NodeInput)
                {
                    inputs.Add(ReadString());
                    return true;
                }
                if (t == NodeOpType)
                {
                    op = ReadString();
                    return true;
                }
                return false;
            });
            if (op == "Gather" && inputs.Count >= 2)
            {
                _gathers.Add((inputs[0], inputs[1]));
            }
            return true;
        }
        return tag == GraphInitializer && Tensor();
    }

    private bool Tensor()
    {
        var dims = new RepeatedField<long>();
        string name = "";
        Message(t =>
        {
            if (t == TensorDims || t == TensorDimsPacked)
            {
                dims.AddEntriesFrom(_input, DimsCodec);
                if (dims.Count > MaxDims)
                {
                    throw ValidateThrow.Invalid(_file, "initializer dims", $"more than {MaxDims}", $"at most {MaxDims}");
                }
                return true;
            }
            if (t == TensorName)
            {
                name = ReadString();
                return true;
            }
            if (t == TensorExternalData)
            {
                HasExternalData = true;
                string key = "", value = "";
                Message(e =>
                {
                    if (e == EntryKey)
                    {
                        key = ReadString();
                        return true;
                    }
                    if (e == EntryValue)
                    {
                        value = ReadString();
                        return true;
                    }
                    return false;
                });
                if (key == "location" && value.Length > 0)
                {
                    _external.Add(value);
                }
                return true;
            }
            return false;
        });
        _dims[name] = [.. dims];
        return true;
    }

    /// <summary>
    /// Reads the fields of the current message to its end; <paramref name="read"/> reads the fields it wants and
    /// returns false for the others, which are skipped. Wire types ONNX never uses (groups, 6, 7) are rejected.
    /// </summary>
    private void Fields(Func<uint, bool> read)
    {
        while (true)
        {
            (_field, _fieldStart) = (0, _input.Position);
            uint tag = _input.ReadTag();
            if (tag == 0)
            {
                return;
            }
            _field = GetTagFieldNumber(tag);
            var wire = GetTagWireType(tag);
            if (wire is not (WireType.Varint or WireType.Fixed64 or WireType.LengthDelimited or WireType.Fixed32))
            {
                throw ValidateThrow.Invalid(_file, $"protobuf field {_field} at byte {_fieldStart}", $"wire type {(int)wire}", "0, 1, 2 or 5");
            }
            if (!read(tag))
            {
                _input.SkipLastField();
            }
        }
    }

    /// <summary>
    /// Reads the embedded message whose tag was just read, within the length it declares. Once its fields are read,
    /// errors (a message that ends before its length) name the message's own field again.
    /// </summary>
    private bool Message(Func<uint, bool> read)
    {
        var (field, start) = (_field, _fieldStart);
        _input.ReadMessage(new Embedded(() =>
        {
            Fields(read);
            (_field, _fieldStart) = (field, start);
        }));
        return true;
    }

    /// <summary>Decodes as <see cref="Encoding.UTF8"/> does (invalid bytes become U+FFFD), not rejecting them as <see cref="CodedInputStream.ReadString"/> would.</summary>
    private string ReadString() => Encoding.UTF8.GetString(_input.ReadBytes().Span);

    /// <summary>
    /// The shape <see cref="CodedInputStream.ReadMessage"/> needs to enter a message: it pushes the message's length
    /// as the limit, counts the depth and calls <see cref="MergeFrom"/>, which reads the fields.
    /// </summary>
    private sealed class Embedded(Action readFields) : IMessage
    {
        public MessageDescriptor Descriptor => throw new NotSupportedException("a partial read has no descriptor");

        public void MergeFrom(CodedInputStream input) => readFields();

        public void WriteTo(CodedOutputStream output) => throw new NotSupportedException("a partial read is not written");

        public int CalculateSize() => throw new NotSupportedException("a partial read is not written");
    }
}
