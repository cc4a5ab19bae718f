using Microsoft.Win32.SafeHandles;
using Onnx;
using OnnxLora.Core.Internals;
using OnnxLora.Core.Onnx.Internals;

namespace OnnxLora.Core.Onnx;

/// <summary>Where one external initializer's bytes are: <paramref name="Length"/> bytes at <paramref name="Offset"/> of the data file
/// <paramref name="Location"/> (relative to the model's folder, as written in the model).</summary>
public sealed record OnnxExternalRange(TensorProto Tensor, string Location, long Offset, long Length);

/// <summary>
/// The external data of a model loaded without it (<see cref="OnnxLoadOptions.LoadExternalData"/> false), opened for
/// positioned reads and range copies: tensors are read one at a time or in slices, never the whole file, with 64-bit
/// offsets (no 2 GiB limit per tensor or per file). Every range was checked when the model was loaded (inside the model
/// folder, inside the file, lengths matching dims, no two tensors overlapping) and is checked again on open.
/// </summary>
public sealed class OnnxExternalDataFiles : IDisposable
{
    private readonly Dictionary<TensorProto, (OnnxExternalRange Range, string RealPath)> _byTensor;

    private readonly Dictionary<string, SafeFileHandle> _handles = new(StringComparer.Ordinal);

    private OnnxExternalDataFiles(string modelPath, List<ExternalDataReader.Range> ranges)
    {
        ModelPath = modelPath;
        Ranges = ranges.Select(r => new OnnxExternalRange(r.Tensor, r.Location, r.Offset, r.Length)).ToList();
        _byTensor = new Dictionary<TensorProto, (OnnxExternalRange, string)>(ReferenceEqualityComparer.Instance);
        for (int i = 0; i < ranges.Count; i++)
        {
            _byTensor.Add(ranges[i].Tensor, (Ranges[i], ranges[i].File.RealPath));
        }
    }

    /// <summary>The model file (full path).</summary>
    public string ModelPath { get; }

    /// <summary>Every external tensor of the model (subgraphs included), in the order the model lists them.</summary>
    public IReadOnlyList<OnnxExternalRange> Ranges { get; }

    /// <summary>Checks and opens the external data of <paramref name="model"/>, loaded from <paramref name="modelPath"/> without it.</summary>
    /// <exception cref="OnnxLoraException">Bad input: a reference points outside the model folder, past the end of its file, or
    /// overlaps another tensor's bytes; the message names the tensor.</exception>
    public static OnnxExternalDataFiles Open(string modelPath, ModelProto model)
    {
        string fullPath = Path.GetFullPath(modelPath);
        return new OnnxExternalDataFiles(fullPath, ExternalDataReader.Ranges(fullPath, model));
    }

    /// <summary>The range of an external tensor of this model, or null when its data is not external.</summary>
    public OnnxExternalRange? RangeOf(TensorProto tensor) => _byTensor.TryGetValue(tensor, out var r) ? r.Range : null;

    /// <summary>The open data file holding <paramref name="range"/> (owned by this object; valid until it is disposed).</summary>
    public SafeFileHandle HandleOf(OnnxExternalRange range)
    {
        string real = _byTensor[range.Tensor].RealPath;
        if (!_handles.TryGetValue(real, out var handle))
        {
            handle = File.OpenHandle(real, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.SequentialScan);
            _handles.Add(real, handle);
        }
        return handle;
    }

    /// <summary>Starts reading <paramref name="range"/>'s bytes into the page cache in the background (<see cref="IO.FileRange.StartPrefetch"/>): the next tensor, while this one is worked on.</summary>
    public void StartPrefetch(OnnxExternalRange range) => IO.FileRange.StartPrefetch(_byTensor[range.Tensor].RealPath, range.Offset, range.Length);

    /// <summary>Reads <paramref name="destination"/>.Length bytes of the tensor starting <paramref name="byteOffset"/> bytes into its range.</summary>
    public void Read(OnnxExternalRange range, long byteOffset, Span<byte> destination)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(byteOffset);
        if (byteOffset + destination.Length > range.Length)
        {
            throw new ArgumentOutOfRangeException(nameof(destination), $"[{byteOffset}, {byteOffset + destination.Length}) exceeds tensor '{range.Tensor.Name}' ({range.Length} bytes)");
        }
        IO.FileRange.ReadExactly(HandleOf(range), destination, range.Offset + byteOffset);
    }

    /// <summary>An external floating-point tensor's values as fp32, read and decoded in bounded chunks (so tensors over
    /// 2 GiB of bytes read too, up to <see cref="Array.MaxLength"/> elements).</summary>
    /// <exception cref="OnnxLoraException">The element type is not floating point, or there are too many elements for one array (bad input).</exception>
    public float[] ReadAsSingle(OnnxExternalRange range)
    {
        var values = new float[ElementCount(range)];
        ReadAsSingle(range, values);
        return values;
    }

    /// <summary>Reads and decodes an external floating-point tensor into <paramref name="destination"/> (its element count long).</summary>
    /// <exception cref="OnnxLoraException">The element type is not floating point, or there are too many elements for one array (bad input).</exception>
    public void ReadAsSingle(OnnxExternalRange range, Span<float> destination)
    {
        long count = ElementCount(range);
        if (destination.Length != count)
        {
            throw new ArgumentException($"tensor '{range.Tensor.Name}' has {count} elements, the destination {destination.Length}", nameof(destination));
        }
        OnnxTensors.TryFromOnnx(range.Tensor.DataType, out var dtype);
        IO.TensorBytes.ReadDecoded(HandleOf(range), range.Offset, dtype, destination);
    }

    /// <summary>Elements of a floating-point tensor that fits one array.</summary>
    public long ElementCount(OnnxExternalRange range)
    {
        var tensor = range.Tensor;
        if (!OnnxTensors.TryFromOnnx(tensor.DataType, out var dtype) || !dtype.IsFloat())
        {
            throw FormatThrow.Invalid(ModelPath, $"tensor '{tensor.Name}' data_type", OnnxTensors.DataTypeName(tensor.DataType), "FLOAT, FLOAT16, BFLOAT16 or DOUBLE");
        }
        long count = range.Length / dtype.SizeOf();
        if (count > Array.MaxLength)
        {
            throw FormatThrow.Invalid(ModelPath, $"tensor '{tensor.Name}' element count", count.ToString(System.Globalization.CultureInfo.InvariantCulture), $"at most {Array.MaxLength} to read into one array");
        }
        return count;
    }

    public void Dispose()
    {
        foreach (var handle in _handles.Values)
        {
            handle.Dispose();
        }
        _handles.Clear();
    }
}
