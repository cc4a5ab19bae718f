using Onnx;
using OnnxLora.Core.Internals;
using OnnxLora.Core.Onnx.Internals;
using OnnxLora.Core.Safetensors;

namespace OnnxLora.Core.Onnx;

/// <summary>
/// The data of one initializer, produced when the model is written rather than held in the
/// <see cref="TensorProto"/>: bytes in memory, or a tensor of a safetensors checkpoint read
/// slice by slice — converted to another float type, transposed, or rewritten in fp32 (a merge) on the
/// way. <see cref="OnnxFile.Save(ModelProto, string, OnnxSaveOptions?, IReadOnlyDictionary{string, OnnxTensorSource}?)"/>
/// pulls each source into the external data file in graph order, so a model of any size is written
/// with buffers of a few tens of MB (plus one fp32 copy of a tensor that is rewritten).
/// </summary>
public abstract class OnnxTensorSource
{
    private protected OnnxTensorSource(DType dtype, IReadOnlyList<long> shape)
    {
        DType = dtype;
        Shape = shape;
        long count = 1;
        foreach (long d in shape)
        {
            count = checked(count * d);
        }
        ElementCount = count;
    }

    /// <summary>The element type of the bytes written.</summary>
    public DType DType { get; }

    /// <summary>The shape of the tensor written (after any transposition).</summary>
    public IReadOnlyList<long> Shape { get; }

    /// <summary>Number of elements.</summary>
    public long ElementCount { get; }

    /// <summary>Number of bytes <see cref="WriteTo"/> writes.</summary>
    public long ByteLength => ElementCount * DType.SizeOf();

    /// <summary>
    /// Writes exactly <see cref="ByteLength"/> bytes from <paramref name="destination"/>'s position, which is
    /// left at the end of them. A seekable destination may be written out of order within that range
    /// (a large transposition writes column blocks).
    /// </summary>
    /// <exception cref="OnnxLoraException">Bad input: the checkpoint changed or was truncated since it was opened.</exception>
    public abstract void WriteTo(Stream destination);

    /// <summary>Starts reading the stored bytes into the page cache in the background, when they are in a file: the next tensor, while one is written.</summary>
    internal virtual void StartPrefetch()
    {
    }

    /// <summary>The bytes in one array (a tensor under 2 GiB, for models whose data stays inside the .onnx file).</summary>
    public byte[] ToArray()
    {
        if (ByteLength > Array.MaxLength)
        {
            throw new InvalidOperationException($"a {ByteLength}-byte tensor does not fit one array; write it to external data.");
        }
        byte[] bytes = new byte[ByteLength];
        using var stream = new MemoryStream(bytes, writable: true);
        WriteTo(stream);
        return bytes;
    }

    /// <summary>
    /// Little-endian <paramref name="data"/> of <paramref name="dtype"/> and <paramref name="shape"/>, written as it is
    /// or, with <paramref name="transpose"/>, as the transpose of the 2-D tensor. The memory must not change afterwards.
    /// </summary>
    public static OnnxTensorSource FromBytes(ReadOnlyMemory<byte> data, DType dtype, IReadOnlyList<long> shape, bool transpose = false)
    {
        ArgumentNullException.ThrowIfNull(shape);
        var spec = new TensorSpec("bytes", dtype, shape);
        if (data.Length != spec.ByteLength)
        {
            throw new ArgumentException($"{data.Length} bytes given for {dtype} {spec.ShapeText} ({spec.ByteLength} bytes).", nameof(data));
        }
        return new TensorStreamer(new TensorStreamer.MemoryInput(data), spec, dtype, transpose, rewrite: null);
    }

    /// <summary>
    /// A float tensor of a safetensors file, stored as <paramref name="dtype"/> (one rounding from fp32,
    /// nearest-even; a plain copy when the types match and nothing is rewritten), transposed when
    /// <paramref name="transpose"/> (2-D only). <paramref name="rewrite"/>, when given, changes the tensor as fp32 in its stored
    /// layout before the conversion (a merge: W + ΔW): the whole tensor in place, or block by block of rows when it has a row form
    /// and the output is transposed.
    /// The bytes are read from the file with positioned reads, not through its memory mapping, so they
    /// do not stay resident in this process; <paramref name="file"/> must stay open until the source is written.
    /// </summary>
    /// <exception cref="OnnxLoraException">Bad input: the tensor is not floating-point.</exception>
    public static OnnxTensorSource FromSafetensors(SafetensorsFile file, TensorInfo tensor, DType dtype, bool transpose = false, TensorRewrite? rewrite = null)
    {
        ArgumentNullException.ThrowIfNull(file);
        ArgumentNullException.ThrowIfNull(tensor);
        if (!tensor.DType.IsFloat())
        {
            throw FormatThrow.Invalid(file.Path, $"tensor '{tensor.Name}' has dtype {tensor.DType}, expected a floating-point dtype.");
        }
        return new TensorStreamer(new TensorStreamer.FileInput(file, tensor), tensor.Spec, dtype, transpose, rewrite);
    }
}
