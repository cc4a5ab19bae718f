using System.Buffers.Binary;
using System.IO.MemoryMappedFiles;
using OnnxLora.Core.Internals;

namespace OnnxLora.Core.Safetensors;

/// <summary>
/// A read-only, memory-mapped safetensors file. The header is validated on open; tensor data is
/// never read whole: callers take spans, streams or converted copies of single tensors. Safe to
/// read from several threads.
/// </summary>
public sealed unsafe partial class SafetensorsFile : IDisposable
{
    private readonly MemoryMappedFile? _map;
    private readonly MemoryMappedViewAccessor? _view;
    private readonly byte* _data;
    private readonly Dictionary<string, TensorInfo> _byName;
    private bool _disposed;

    private SafetensorsFile(string path, long dataStart, long dataLength, List<TensorInfo> tensors,
        Dictionary<string, string> metadata, MemoryMappedFile? map, MemoryMappedViewAccessor? view)
    {
        Path = path;
        DataStart = dataStart;
        DataLength = dataLength;
        Tensors = tensors;
        Metadata = metadata;
        _map = map;
        _view = view;
        _byName = tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
        if (view is not null)
        {
            byte* p = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
            _data = p + view.PointerOffset + dataStart;
        }
    }

    /// <summary>The file's path.</summary>
    public string Path { get; }

    /// <summary>Offset of the data section in the file (8 + header length).</summary>
    public long DataStart { get; }

    /// <summary>Length of the data section.</summary>
    public long DataLength { get; }

    /// <summary>Tensors in header order.</summary>
    public IReadOnlyList<TensorInfo> Tensors { get; }

    /// <summary>The header's <c>__metadata__</c> map (empty when absent).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>Opens and validates a safetensors file.</summary>
    /// <exception cref="OnnxLoraException">The file is not a valid safetensors file (bad input); the message says why.</exception>
    public static SafetensorsFile Open(string path, SafetensorsLimits? limits = null)
    {
        limits ??= SafetensorsLimits.Default;
        var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.None);
        try
        {
            return Open(path, stream, limits);
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    private static SafetensorsFile Open(string path, FileStream stream, SafetensorsLimits limits)
    {
        long fileLength = stream.Length;
        if (fileLength < 8)
        {
            throw FormatThrow.Invalid(path, "file length", $"{fileLength} bytes", "at least 8 bytes (the header length)");
        }
        Span<byte> prefix = stackalloc byte[8];
        stream.ReadExactly(prefix);
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(prefix);
        if (headerLength > (ulong)limits.MaxHeaderBytes)
        {
            throw FormatThrow.Invalid(path, "header length", $"{headerLength} bytes", $"at most {limits.MaxHeaderBytes} bytes");
        }
        if (headerLength + 8 > (ulong)fileLength)
        {
            throw FormatThrow.Invalid(path, "header length", $"{headerLength} bytes", $"at most {fileLength - 8} bytes (the file is truncated or not safetensors)");
        }
        if (headerLength < 2)
        {
            throw FormatThrow.Invalid(path, "header length", $"{headerLength} bytes", "a JSON object of at least 2 bytes");
        }
        byte[] header = new byte[headerLength];
        stream.ReadExactly(header);
        if (header[0] != (byte)'{')
        {
            throw FormatThrow.Invalid(path, "header", $"first byte 0x{header[0]:X2}", "'{' (a JSON object)");
        }
        long dataStart = 8 + (long)headerLength;
        long dataLength = fileLength - dataStart;
        var (tensors, metadata) = ParseHeader(path, header.AsSpan().TrimEnd((byte)' '), dataLength, limits);

        if (dataLength == 0)
        {
            stream.Dispose();
            return new SafetensorsFile(path, dataStart, dataLength, tensors, metadata, null, null);
        }
        var map = MemoryMappedFile.CreateFromFile(stream, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: false);
        try
        {
            var view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            return new SafetensorsFile(path, dataStart, dataLength, tensors, metadata, map, view);
        }
        catch
        {
            map.Dispose();
            throw;
        }
    }

    /// <summary>True when the file holds a tensor of that name.</summary>
    public bool Contains(string name) => _byName.ContainsKey(name);

    /// <summary>The tensor of that name, or null.</summary>
    public TensorInfo? Find(string name) => _byName.GetValueOrDefault(name);

    /// <summary>The tensor of that name.</summary>
    /// <exception cref="OnnxLoraException">No such tensor (bad input); the message names the file.</exception>
    public TensorInfo Get(string name) =>
        _byName.TryGetValue(name, out var t) ? t : throw FormatThrow.Invalid(Path, $"no tensor named '{name}'.");

    /// <summary>The raw little-endian bytes of a tensor smaller than 2 GiB, straight from the mapping.</summary>
    public ReadOnlySpan<byte> GetBytes(TensorInfo tensor)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (tensor.ByteLength > int.MaxValue)
        {
            throw new InvalidOperationException($"{Path}: tensor '{tensor.Name}' has {tensor.ByteLength} bytes; read it with OpenRead or in slices.");
        }
        return tensor.ByteLength == 0 ? [] : new ReadOnlySpan<byte>(_data + tensor.DataOffset, (int)tensor.ByteLength);
    }

    /// <summary>A slice of a tensor's bytes (for tensors over 2 GiB, read slice by slice).</summary>
    public ReadOnlySpan<byte> GetBytes(TensorInfo tensor, long byteOffset, int byteCount)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentOutOfRangeException.ThrowIfNegative(byteOffset);
        ArgumentOutOfRangeException.ThrowIfNegative(byteCount);
        if (byteOffset + byteCount > tensor.ByteLength)
        {
            throw new ArgumentOutOfRangeException(nameof(byteCount), $"slice [{byteOffset}, {byteOffset + byteCount}) exceeds tensor '{tensor.Name}' ({tensor.ByteLength} bytes)");
        }
        return byteCount == 0 ? [] : new ReadOnlySpan<byte>(_data + tensor.DataOffset + byteOffset, byteCount);
    }

    /// <summary>A read-only stream over a tensor's bytes, of any size.</summary>
    public Stream OpenRead(TensorInfo tensor)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return tensor.ByteLength == 0 ? Stream.Null : new UnmanagedMemoryStream(_data + tensor.DataOffset, tensor.ByteLength);
    }

    /// <summary>A float tensor's values as fp32 (converted from F16/BF16/F64 where stored so).</summary>
    public float[] ReadSingles(string name) => ReadSingles(Get(name));

    /// <inheritdoc cref="ReadSingles(string)"/>
    public float[] ReadSingles(TensorInfo tensor)
    {
        if (!tensor.DType.IsFloat())
        {
            throw FormatThrow.Invalid(Path, $"tensor '{tensor.Name}' has dtype {tensor.DType}, expected a floating-point dtype.");
        }
        if (tensor.ElementCount > Array.MaxLength)
        {
            throw FormatThrow.Invalid(Path, $"tensor '{tensor.Name}' has {tensor.ElementCount} elements, too many for one array.");
        }
        var result = new float[tensor.ElementCount];
        // Decoded slice by slice: a tensor over 2 GiB of bytes (an fp32 embedding of a large vocabulary) has no single span.
        int size = tensor.DType.SizeOf();
        const int PerSlice = 1 << 24;
        for (long done = 0; done < result.LongLength; done += PerSlice)
        {
            int n = (int)Math.Min(PerSlice, result.LongLength - done);
            FloatCodec.Decode(tensor.DType, GetBytes(tensor, done * size, n * size), result.AsSpan((int)done, n));
        }
        return result;
    }

    /// <summary>An integer tensor's values as int64 (I64/I32/I16/I8/U8/BOOL).</summary>
    public long[] ReadInt64s(TensorInfo tensor)
    {
        var bytes = GetBytes(tensor);
        var result = new long[tensor.ElementCount];
        for (int i = 0; i < result.Length; i++)
        {
            result[i] = tensor.DType switch
            {
                DType.I64 => BinaryPrimitives.ReadInt64LittleEndian(bytes[(i * 8)..]),
                DType.I32 => BinaryPrimitives.ReadInt32LittleEndian(bytes[(i * 4)..]),
                DType.I16 => BinaryPrimitives.ReadInt16LittleEndian(bytes[(i * 2)..]),
                DType.I8 => (sbyte)bytes[i],
                DType.U8 or DType.Bool => bytes[i],
                _ => throw FormatThrow.Invalid(Path, $"tensor '{tensor.Name}' has dtype {tensor.DType}, expected an integer dtype."),
            };
        }
        return result;
    }

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }
        _disposed = true;
        if (_view is not null)
        {
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _view.Dispose();
        }
        _map?.Dispose();
    }
}
