using System.Text;

namespace OnnxLora.Validate.Internals;

/// <summary>
/// Reads the few facts Validate needs from an .onnx file without materialising its weights: the external data files
/// its initializers reference, the dims of each initializer and which initializers Gather nodes index. It walks the
/// protobuf wire format (ModelProto.graph = 7; GraphProto.node = 1, initializer = 5; NodeProto.input = 1,
/// op_type = 4; TensorProto.dims = 1, name = 8, external_data = 13 with key = 1/value = 2) and seeks over every
/// other field, so embedded raw_data of any size costs no memory. Initializers inside subgraphs are not visited.
/// </summary>
internal sealed class OnnxFileScan
{
    private const int MaxString = 1 << 16;
    private const int MaxDims = 64;

    private readonly string _file;
    private readonly Stream _stream;
    private readonly HashSet<string> _external = new(StringComparer.Ordinal);
    private readonly Dictionary<string, long[]> _dims = new(StringComparer.Ordinal);
    private readonly List<(string Data, string Indices)> _gathers = [];

    private OnnxFileScan(string file, Stream stream)
    {
        _file = file;
        _stream = stream;
    }

    /// <summary>External data files as the model names them (relative to the model's folder).</summary>
    public IReadOnlyCollection<string> ExternalLocations => _external;

    public IReadOnlyDictionary<string, long[]> InitializerDims => _dims;

    public IReadOnlyList<(string Data, string Indices)> Gathers => _gathers;

    public static OnnxFileScan Read(string path)
    {
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        var scan = new OnnxFileScan(path, fs);
        scan.Message(fs.Length, (field, wire, end) =>
        {
            if (field == 7 && wire == 2)
            {
                scan.Message(end, scan.GraphField);
                return true;
            }
            return false;
        });
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

    private bool GraphField(int field, int wire, long end)
    {
        if (field == 1 && wire == 2)
        {
            var inputs = new List<string>();
            string op = "";
            Message(end, (f, w, e) =>
            {
                if (f == 1 && w == 2)
                {
                    inputs.Add(ReadString(e));
                    return true;
                }
                if (f == 4 && w == 2)
                {
                    op = ReadString(e);
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
        if (field == 5 && wire == 2)
        {
            Tensor(end);
            return true;
        }
        return false;
    }

    private void Tensor(long end)
    {
        var dims = new List<long>();
        string name = "";
        Message(end, (f, w, e) =>
        {
            if (f == 1 && w == 0)
            {
                AddDim(dims, ReadVarint());
                return true;
            }
            if (f == 1 && w == 2)
            {
                while (_stream.Position < e)
                {
                    AddDim(dims, ReadVarint());
                }
                return true;
            }
            if (f == 8 && w == 2)
            {
                name = ReadString(e);
                return true;
            }
            if (f == 13 && w == 2)
            {
                string key = "", value = "";
                Message(e, (kf, kw, ke) =>
                {
                    if (kf is 1 or 2 && kw == 2)
                    {
                        string s = ReadString(ke);
                        if (kf == 1)
                        {
                            key = s;
                        }
                        else
                        {
                            value = s;
                        }
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
    }

    private void AddDim(List<long> dims, ulong value)
    {
        if (dims.Count >= MaxDims)
        {
            throw ValidateThrow.Invalid(_file, "initializer dims", $"more than {MaxDims}", $"at most {MaxDims}");
        }
        dims.Add((long)value);
    }

    /// <summary>Reads fields until <paramref name="end"/>; <paramref name="field"/> returns false for fields it skips.</summary>
    private void Message(long end, Func<int, int, long, bool> field)
    {
        while (_stream.Position < end)
        {
            ulong tag = ReadVarint();
            int number = (int)(tag >> 3);
            int wire = (int)(tag & 7);
            long fieldEnd = -1;
            if (wire == 2)
            {
                ulong length = ReadVarint();
                if (length > (ulong)(end - _stream.Position))
                {
                    throw ValidateThrow.Invalid(_file, $"protobuf field {number} at byte {_stream.Position}",
                        $"length {length}", $"at most the {end - _stream.Position} bytes left in its message");
                }
                fieldEnd = _stream.Position + (long)length;
            }
            long start = _stream.Position;
            if (field(number, wire, fieldEnd))
            {
                if (wire == 2)
                {
                    _stream.Position = fieldEnd;
                }
                continue;
            }
            _stream.Position = start;
            Skip(number, wire, fieldEnd);
        }
        if (_stream.Position != end)
        {
            throw ValidateThrow.Invalid(_file, "protobuf message end", $"byte {_stream.Position}", $"byte {end}");
        }
    }

    private void Skip(int number, int wire, long fieldEnd)
    {
        switch (wire)
        {
            case 0:
                ReadVarint();
                break;
            case 1:
                _stream.Position += 8;
                break;
            case 2:
                _stream.Position = fieldEnd;
                break;
            case 5:
                _stream.Position += 4;
                break;
            default:
                throw ValidateThrow.Invalid(_file, $"protobuf field {number} at byte {_stream.Position}", $"wire type {wire}", "0, 1, 2 or 5");
        }
        if (_stream.Position > _stream.Length)
        {
            throw ValidateThrow.Invalid(_file, $"protobuf field {number}", "a field past the end of the file", "a complete field");
        }
    }

    private string ReadString(long end)
    {
        long length = end - _stream.Position;
        if (length > MaxString)
        {
            return "";
        }
        var bytes = new byte[length];
        _stream.ReadExactly(bytes);
        return Encoding.UTF8.GetString(bytes);
    }

    private ulong ReadVarint()
    {
        ulong result = 0;
        for (int shift = 0; shift < 64; shift += 7)
        {
            int b = _stream.ReadByte();
            if (b < 0)
            {
                throw ValidateThrow.Invalid(_file, "protobuf varint", "end of file", "more bytes");
            }
            result |= (ulong)(b & 0x7F) << shift;
            if ((b & 0x80) == 0)
            {
                return result;
            }
        }
        throw ValidateThrow.Invalid(_file, "protobuf varint", "more than 10 bytes", "at most 10");
    }
}
