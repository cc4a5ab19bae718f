using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Google.Protobuf;
using Onnx;
using OnnxLora.Core.Internals;

namespace OnnxLora.Core.Onnx;

/// <summary>
/// Reading and writing the data of ONNX tensors (initializers): element-type mapping, decoding to
/// fp32 from any of the places ONNX may keep the values (raw_data, float_data, int32_data for
/// fp16/bf16, double_data), and replacing the data in place.
/// </summary>
public static class OnnxTensors
{
    /// <summary>The ONNX element type of a <see cref="DType"/>.</summary>
    public static TensorProto.Types.DataType ToOnnx(this DType dtype) => dtype switch
    {
        DType.F32 => TensorProto.Types.DataType.Float,
        DType.F16 => TensorProto.Types.DataType.Float16,
        DType.BF16 => TensorProto.Types.DataType.Bfloat16,
        DType.F64 => TensorProto.Types.DataType.Double,
        DType.I64 => TensorProto.Types.DataType.Int64,
        DType.I32 => TensorProto.Types.DataType.Int32,
        DType.I16 => TensorProto.Types.DataType.Int16,
        DType.I8 => TensorProto.Types.DataType.Int8,
        DType.U8 => TensorProto.Types.DataType.Uint8,
        DType.Bool => TensorProto.Types.DataType.Bool,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "unknown dtype"),
    };

    /// <summary>The <see cref="DType"/> of an ONNX element type; false for types this project does not handle.</summary>
    public static bool TryFromOnnx(int onnxDataType, out DType dtype)
    {
        switch ((TensorProto.Types.DataType)onnxDataType)
        {
            case TensorProto.Types.DataType.Float: dtype = DType.F32; return true;
            case TensorProto.Types.DataType.Float16: dtype = DType.F16; return true;
            case TensorProto.Types.DataType.Bfloat16: dtype = DType.BF16; return true;
            case TensorProto.Types.DataType.Double: dtype = DType.F64; return true;
            case TensorProto.Types.DataType.Int64: dtype = DType.I64; return true;
            case TensorProto.Types.DataType.Int32: dtype = DType.I32; return true;
            case TensorProto.Types.DataType.Int16: dtype = DType.I16; return true;
            case TensorProto.Types.DataType.Int8: dtype = DType.I8; return true;
            case TensorProto.Types.DataType.Uint8: dtype = DType.U8; return true;
            case TensorProto.Types.DataType.Bool: dtype = DType.Bool; return true;
            default: dtype = default; return false;
        }
    }

    /// <summary>Number of elements the tensor's dims describe (1 for a scalar).</summary>
    /// <exception cref="OnnxLoraException">A dim is negative or the count overflows (bad input).</exception>
    public static long ElementCount(TensorProto tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        long count = 1;
        foreach (long d in tensor.Dims)
        {
            if (d < 0)
            {
                throw FormatThrow.Invalid("<tensor>", $"tensor '{tensor.Name}' dims", $"[{string.Join(", ", tensor.Dims)}]", "non-negative dims");
            }
            try
            {
                count = checked(count * d);
            }
            catch (OverflowException)
            {
                throw FormatThrow.Invalid("<tensor>", $"tensor '{tensor.Name}' dims", $"[{string.Join(", ", tensor.Dims)}]", "an element count that fits in 64 bits");
            }
        }
        return count;
    }

    /// <summary>True when the tensor's data lives in an external file (not yet loaded).</summary>
    public static bool IsExternal(TensorProto tensor) =>
        tensor.DataLocation == TensorProto.Types.DataLocation.External;

    /// <summary>Creates a tensor with raw little-endian data. The bytes are copied.</summary>
    public static TensorProto Create(string name, DType dtype, ReadOnlySpan<long> shape, ReadOnlySpan<byte> data) =>
        CreateWrapped(name, dtype, shape, ByteString.CopyFrom(data));

    /// <summary>Creates an fp32/fp16/bf16/fp64 tensor from floats, converting once (round to nearest even).</summary>
    public static TensorProto Create(string name, DType dtype, ReadOnlySpan<long> shape, ReadOnlySpan<float> values)
    {
        if (!dtype.IsFloat())
        {
            throw new ArgumentException($"tensor '{name}': dtype {dtype} is not a floating-point type.", nameof(dtype));
        }
        byte[] bytes = new byte[checked(values.Length * dtype.SizeOf())];
        FloatCodec.Encode(dtype, values, bytes);
        return CreateWrapped(name, dtype, shape, UnsafeByteOperations.UnsafeWrap(bytes));
    }

    /// <summary>Creates an int64 tensor.</summary>
    public static TensorProto Create(string name, ReadOnlySpan<long> shape, ReadOnlySpan<long> values) =>
        Create(name, DType.I64, shape, MemoryMarshal.AsBytes(values));

    /// <summary>
    /// Creates a tensor whose raw data is <paramref name="data"/> itself, without copying: the caller
    /// must not change the memory afterwards.
    /// </summary>
    public static TensorProto CreateWrapped(string name, DType dtype, ReadOnlySpan<long> shape, ReadOnlyMemory<byte> data) =>
        CreateWrapped(name, dtype, shape, UnsafeByteOperations.UnsafeWrap(data));

    private static TensorProto CreateWrapped(string name, DType dtype, ReadOnlySpan<long> shape, ByteString data)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        var tensor = new TensorProto { Name = name, DataType = (int)dtype.ToOnnx() };
        long count = 1;
        foreach (long d in shape)
        {
            if (d < 0)
            {
                throw new ArgumentException($"tensor '{name}': negative dim {d}.", nameof(shape));
            }
            count = checked(count * d);
            tensor.Dims.Add(d);
        }
        long expected = checked(count * dtype.SizeOf());
        if (data.Length != expected)
        {
            throw new ArgumentException($"tensor '{name}': data has {data.Length} bytes, expected {expected} for {dtype} [{string.Join(", ", shape.ToArray())}].", nameof(data));
        }
        tensor.RawData = data;
        return tensor;
    }

    /// <summary>
    /// The tensor's values as fp32, from raw_data (fp32/fp16/bf16/fp64), float_data, double_data, or
    /// int32_data (fp16/bf16 bit patterns).
    /// </summary>
    /// <exception cref="InvalidOperationException">The tensor's data is external and was not loaded.</exception>
    /// <exception cref="OnnxLoraException">The element type is not floating point or the data length does not match the dims (bad input).</exception>
    public static float[] ReadAsSingle(TensorProto tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        if (IsExternal(tensor))
        {
            throw new InvalidOperationException($"tensor '{tensor.Name}': data is external; load the model with LoadExternalData = true.");
        }
        if (!TryFromOnnx(tensor.DataType, out var dtype) || !dtype.IsFloat())
        {
            throw FormatThrow.Invalid("<tensor>", $"tensor '{tensor.Name}' data_type", DataTypeName(tensor.DataType), "FLOAT, FLOAT16, BFLOAT16 or DOUBLE");
        }
        long count = ElementCount(tensor);
        if (count > Array.MaxLength)
        {
            throw FormatThrow.Invalid("<tensor>", $"tensor '{tensor.Name}' element count", count.ToString(System.Globalization.CultureInfo.InvariantCulture), $"at most {Array.MaxLength} to read into one array");
        }
        var result = new float[count];
        if (!tensor.RawData.IsEmpty || count == 0)
        {
            CheckLength(tensor, dtype, tensor.RawData.Length, count * dtype.SizeOf(), "raw_data bytes");
            FloatCodec.Decode(dtype, tensor.RawData.Span, result);
            return result;
        }
        switch (dtype)
        {
            case DType.F32:
                CheckLength(tensor, dtype, tensor.FloatData.Count, count, "float_data values");
                tensor.FloatData.CopyTo(result, 0);
                break;
            case DType.F64:
                CheckLength(tensor, dtype, tensor.DoubleData.Count, count, "double_data values");
                for (int i = 0; i < result.Length; i++)
                {
                    result[i] = (float)tensor.DoubleData[i];
                }
                break;
            default:
                // fp16 and bf16 values are kept as their 16-bit patterns in int32_data.
                CheckLength(tensor, dtype, tensor.Int32Data.Count, count, "int32_data values");
                for (int i = 0; i < result.Length; i++)
                {
                    ushort bits = (ushort)tensor.Int32Data[i];
                    result[i] = dtype == DType.F16 ? (float)BitConverter.UInt16BitsToHalf(bits) : FloatCodec.BFloat16ToSingle(bits);
                }
                break;
        }
        return result;
    }

    /// <summary>
    /// Replaces the tensor's values, keeping its name, element type and dims: the floats are
    /// converted to the tensor's own floating-point type and stored as raw_data; typed fields and
    /// external-data entries are cleared.
    /// </summary>
    public static void ReplaceData(TensorProto tensor, ReadOnlySpan<float> values)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        if (!TryFromOnnx(tensor.DataType, out var dtype) || !dtype.IsFloat())
        {
            throw new ArgumentException($"tensor '{tensor.Name}': data_type {DataTypeName(tensor.DataType)} is not a floating-point type.", nameof(tensor));
        }
        long count = ElementCount(tensor);
        if (values.Length != count)
        {
            throw new ArgumentException($"tensor '{tensor.Name}': {values.Length} values given, expected {count}.", nameof(values));
        }
        byte[] bytes = new byte[checked(values.Length * dtype.SizeOf())];
        FloatCodec.Encode(dtype, values, bytes);
        SetRawData(tensor, UnsafeByteOperations.UnsafeWrap(bytes));
    }

    /// <summary>
    /// The tensor's data as raw little-endian bytes (the raw_data itself when set, otherwise encoded
    /// from the typed field). Null for types without a fixed-size encoding (strings).
    /// </summary>
    internal static ByteString? RawBytes(TensorProto tensor)
    {
        if (!tensor.RawData.IsEmpty)
        {
            return tensor.RawData;
        }
        if (!TryFromOnnx(tensor.DataType, out var dtype))
        {
            return null;
        }
        long count = ElementCount(tensor);
        if (count == 0)
        {
            return ByteString.Empty;
        }
        byte[] bytes = new byte[checked(count * dtype.SizeOf())];
        switch (dtype)
        {
            case DType.F32 when tensor.FloatData.Count == count:
                for (int i = 0; i < count; i++)
                {
                    BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(i * 4), tensor.FloatData[i]);
                }
                break;
            case DType.F64 when tensor.DoubleData.Count == count:
                for (int i = 0; i < count; i++)
                {
                    BinaryPrimitives.WriteDoubleLittleEndian(bytes.AsSpan(i * 8), tensor.DoubleData[i]);
                }
                break;
            case DType.I64 when tensor.Int64Data.Count == count:
                for (int i = 0; i < count; i++)
                {
                    BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(i * 8), tensor.Int64Data[i]);
                }
                break;
            case DType.I32 or DType.I16 or DType.I8 or DType.U8 or DType.Bool or DType.F16 or DType.BF16 when tensor.Int32Data.Count == count:
                int size = dtype.SizeOf();
                for (int i = 0; i < count; i++)
                {
                    int v = tensor.Int32Data[i];
                    switch (size)
                    {
                        case 4: BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(i * 4), v); break;
                        case 2: BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(i * 2), (ushort)v); break;
                        default: bytes[i] = (byte)v; break;
                    }
                }
                break;
            default:
                return null;
        }
        return UnsafeByteOperations.UnsafeWrap(bytes);
    }

    /// <summary>Makes <paramref name="data"/> the tensor's only data.</summary>
    internal static void SetRawData(TensorProto tensor, ByteString data)
    {
        tensor.FloatData.Clear();
        tensor.DoubleData.Clear();
        tensor.Int32Data.Clear();
        tensor.Int64Data.Clear();
        tensor.Uint64Data.Clear();
        tensor.ExternalData.Clear();
        tensor.DataLocation = TensorProto.Types.DataLocation.Default;
        tensor.RawData = data;
    }

    /// <summary>The ONNX spelling of an element type ("FLOAT16"), or its number when unknown.</summary>
    public static string DataTypeName(int onnxDataType) =>
        Enum.IsDefined(typeof(TensorProto.Types.DataType), onnxDataType)
            ? ((TensorProto.Types.DataType)onnxDataType).ToString().ToUpperInvariant()
            : onnxDataType.ToString(System.Globalization.CultureInfo.InvariantCulture);

    private static void CheckLength(TensorProto tensor, DType dtype, long found, long expected, string what)
    {
        if (found != expected)
        {
            throw FormatThrow.Invalid("<tensor>", $"tensor '{tensor.Name}' {what}", found.ToString(System.Globalization.CultureInfo.InvariantCulture),
                $"{expected} for {dtype} [{string.Join(", ", tensor.Dims)}]");
        }
    }
}
