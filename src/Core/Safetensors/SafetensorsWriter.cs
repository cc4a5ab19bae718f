using System.Buffers.Binary;
using System.Text.Json;
using Microsoft.Win32.SafeHandles;
using OnnxLora.Core.IO;

namespace OnnxLora.Core.Safetensors;

/// <summary>
/// Writes a safetensors file tensor by tensor, so a checkpoint of any size streams through with
/// memory bounded by the caller's buffers. The header is written first from the declared specs;
/// tensors are then written in declaration order, each in one or more chunks. The file appears
/// under its final name only on <see cref="Commit"/> (see <see cref="AtomicFile"/>).
/// </summary>
public sealed class SafetensorsWriter : IDisposable
{
    private readonly AtomicFile _file;
    private readonly IReadOnlyList<TensorSpec> _specs;
    private int _index;
    private long _writtenInCurrent;

    private SafetensorsWriter(AtomicFile file, IReadOnlyList<TensorSpec> specs)
    {
        _file = file;
        _specs = specs;
    }

    /// <summary>Starts a file that will hold exactly <paramref name="tensors"/>, in that order.</summary>
    public static SafetensorsWriter Create(string path, IReadOnlyList<TensorSpec> tensors,
        IReadOnlyDictionary<string, string>? metadata = null, bool overwrite = false)
    {
        byte[] header = BuildHeader(tensors, metadata);
        var file = AtomicFile.Create(path, overwrite);
        try
        {
            Span<byte> prefix = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(prefix, (ulong)header.Length);
            file.Stream.Write(prefix);
            file.Stream.Write(header);
            return new SafetensorsWriter(file, tensors);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>Writes a whole file from in-memory tensors.</summary>
    public static void Save(string path, IEnumerable<(TensorSpec Spec, ReadOnlyMemory<byte> Data)> tensors,
        IReadOnlyDictionary<string, string>? metadata = null, bool overwrite = false)
    {
        var list = tensors.ToList();
        using var writer = Create(path, list.Select(t => t.Spec).ToList(), metadata, overwrite);
        foreach (var (spec, data) in list)
        {
            writer.Write(spec.Name, data.Span);
        }
        writer.Commit();
    }

    /// <summary>The JSON header bytes (padded with spaces to a multiple of 8) for these tensors.</summary>
    public static byte[] BuildHeader(IReadOnlyList<TensorSpec> tensors, IReadOnlyDictionary<string, string>? metadata)
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = false, SkipValidation = false }))
        {
            json.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                json.WriteStartObject("__metadata__");
                foreach (var (key, value) in metadata.OrderBy(kv => kv.Key, StringComparer.Ordinal))
                {
                    json.WriteString(key, value);
                }
                json.WriteEndObject();
            }
            long offset = 0;
            foreach (var spec in tensors)
            {
                if (spec.Name == "__metadata__" || !names.Add(spec.Name))
                {
                    throw new ArgumentException($"tensor name '{spec.Name}' is reserved or appears twice", nameof(tensors));
                }
                long length = spec.ByteLength;
                json.WriteStartObject(spec.Name);
                json.WriteString("dtype", spec.DType.SafetensorsName());
                json.WriteStartArray("shape");
                foreach (long d in spec.Shape)
                {
                    json.WriteNumberValue(d);
                }
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                json.WriteNumberValue(offset + length);
                json.WriteEndArray();
                json.WriteEndObject();
                offset += length;
            }
            json.WriteEndObject();
        }
        int padded = (int)((buffer.Length + 7) / 8 * 8);
        while (buffer.Length < padded)
        {
            buffer.WriteByte((byte)' ');
        }
        return buffer.ToArray();
    }

    /// <summary>Writes (a chunk of) the next tensor's bytes. Tensors go in declaration order, chunks of one tensor in order.</summary>
    public void Write(string name, ReadOnlySpan<byte> data)
    {
        Reserve(name, data.Length);
        _file.Stream.Write(data);
        _file.NoteWritten(data.Length);
    }

    /// <summary>
    /// Writes (a chunk of) the next tensor's bytes by copying <paramref name="length"/> bytes at <paramref name="offset"/> of
    /// another open file, inside the kernel where it can (<see cref="FileRange.Copy"/>): an unchanged tensor streams from the
    /// input file to this one without passing through this process.
    /// </summary>
    public void CopyFrom(string name, SafeFileHandle source, long offset, long length)
    {
        Reserve(name, length);
        var stream = _file.Stream;
        stream.Flush();
        long position = stream.Position;
        FileRange.Copy(source, offset, stream.SafeFileHandle, position, length);
        stream.Position = position + length;
        _file.NoteWritten(length);
    }

    /// <summary>Checks that <paramref name="length"/> more bytes of tensor <paramref name="name"/> come next, and counts them.</summary>
    private void Reserve(string name, long length)
    {
        while (_index < _specs.Count && _specs[_index].Name != name && _writtenInCurrent == _specs[_index].ByteLength)
        {
            _index++;
            _writtenInCurrent = 0;
        }
        if (_index >= _specs.Count)
        {
            throw new InvalidOperationException($"{_file.FinalPath}: '{name}' is not among the tensors still to write.");
        }
        var spec = _specs[_index];
        if (spec.Name != name)
        {
            throw new InvalidOperationException($"{_file.FinalPath}: expected tensor '{spec.Name}' next, got '{name}'.");
        }
        if (_writtenInCurrent + length > spec.ByteLength)
        {
            throw new InvalidOperationException($"{_file.FinalPath}: tensor '{name}' declared {spec.ByteLength} bytes, got more.");
        }
        _writtenInCurrent += length;
    }

    /// <summary>Checks every tensor was written in full, then makes the file appear under its final name.</summary>
    public void Commit()
    {
        while (_index < _specs.Count && _writtenInCurrent == _specs[_index].ByteLength)
        {
            _index++;
            _writtenInCurrent = 0;
        }
        if (_index != _specs.Count)
        {
            throw new InvalidOperationException($"{_file.FinalPath}: tensor '{_specs[_index].Name}' is incomplete ({_writtenInCurrent} of {_specs[_index].ByteLength} bytes).");
        }
        _file.Commit();
    }

    public void Dispose() => _file.Dispose();
}
