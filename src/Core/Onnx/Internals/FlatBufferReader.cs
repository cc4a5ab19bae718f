using System.Buffers.Binary;
using System.Text;

namespace OnnxLora.Core.Onnx.Internals;

/// <summary>
/// Bounds-checked reading of a FlatBuffer's tables, scalars, strings and vectors: every offset, length and
/// alignment taken from the buffer is checked against it before it is followed, and a violation is a bad-input
/// error naming the file. Layout facts from the FlatBuffers binary format (root uoffset at 0, a table starts with
/// an soffset to its vtable, the vtable holds its size, the table's inline size and one uint16 offset per field).
/// </summary>
/// <remarks>
/// Written by hand because Google.FlatBuffers 25.2.10's C# <c>Verifier</c> computes vtable positions as Int16:
/// in any buffer over 32 KiB it overflows, prints the exception to the console and treats the field as absent,
/// so it neither verifies real adapter files nor keeps stdout clean.
/// </remarks>
internal readonly ref struct FlatBufferReader
{
    private readonly ReadOnlySpan<byte> _buffer;
    private readonly string _file;

    public FlatBufferReader(ReadOnlySpan<byte> buffer, string file)
    {
        _buffer = buffer;
        _file = file;
    }

    /// <summary>The root table's position.</summary>
    public int Root() => Deref(0, "root table offset");

    /// <summary>Checks the table at <paramref name="table"/> and its vtable; returns <paramref name="table"/>.</summary>
    public int Table(int table, string what)
    {
        Need(table, 4, 4, what);
        long vtable = (long)table - BinaryPrimitives.ReadInt32LittleEndian(_buffer[table..]);
        Need(vtable, 4, 2, $"{what} vtable");
        int vtableSize = BinaryPrimitives.ReadUInt16LittleEndian(_buffer[(int)vtable..]);
        int inlineSize = BinaryPrimitives.ReadUInt16LittleEndian(_buffer[((int)vtable + 2)..]);
        if (vtableSize < 4 || vtableSize % 2 != 0)
        {
            throw Bad($"{what} vtable size", vtableSize.ToString(System.Globalization.CultureInfo.InvariantCulture), "an even size of at least 4 bytes");
        }
        Need(vtable, vtableSize, 2, $"{what} vtable");
        Need(table, Math.Max(4, inlineSize), 4, what);
        return table;
    }

    /// <summary>The position of field <paramref name="slot"/> of a checked table, or 0 when the field is absent.</summary>
    public int Field(int table, int slot, int size, string what)
    {
        long vtable = (long)table - BinaryPrimitives.ReadInt32LittleEndian(_buffer[table..]);
        int vtableSize = BinaryPrimitives.ReadUInt16LittleEndian(_buffer[(int)vtable..]);
        int entry = 4 + (2 * slot);
        if (entry + 2 > vtableSize)
        {
            return 0;
        }
        int offset = BinaryPrimitives.ReadUInt16LittleEndian(_buffer[((int)vtable + entry)..]);
        int inlineSize = BinaryPrimitives.ReadUInt16LittleEndian(_buffer[((int)vtable + 2)..]);
        if (offset == 0)
        {
            return 0;
        }
        if (offset + size > inlineSize)
        {
            throw Bad(what, $"field offset {offset} + {size} bytes", $"inside its table's {inlineSize} bytes");
        }
        Need((long)table + offset, size, Math.Min(size, 8), what);
        return table + offset;
    }

    /// <summary>An int32 field, or 0 when absent.</summary>
    public int Int(int table, int slot, string what)
    {
        int at = Field(table, slot, 4, what);
        return at == 0 ? 0 : BinaryPrimitives.ReadInt32LittleEndian(_buffer[at..]);
    }

    /// <summary>The position an offset field points to (a table, string or vector), or 0 when absent.</summary>
    public int Reference(int table, int slot, string what)
    {
        int at = Field(table, slot, 4, what);
        return at == 0 ? 0 : Deref(at, what);
    }

    /// <summary>A string field's text, or null when absent.</summary>
    public string? String(int table, int slot, string what)
    {
        int at = Reference(table, slot, what);
        if (at == 0)
        {
            return null;
        }
        var (start, length) = Vector(at, 1, 1, what);
        Need((long)start + length, 1, 1, $"{what} terminator");
        try
        {
            return new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(_buffer.Slice(start, length));
        }
        catch (DecoderFallbackException)
        {
            throw Bad(what, "bytes that are not UTF-8", "a UTF-8 string");
        }
    }

    /// <summary>The element start and count of the vector at <paramref name="at"/>, with its elements inside the buffer.</summary>
    public (int Start, int Count) Vector(int at, int elementSize, int alignment, string what)
    {
        Need(at, 4, 4, $"{what} length");
        uint count = BinaryPrimitives.ReadUInt32LittleEndian(_buffer[at..]);
        long start = (long)at + 4;
        Need(start, (long)count * elementSize, alignment, what);
        return ((int)start, (int)count);
    }

    /// <summary>The element start and count of a vector field, or (0, 0) when absent.</summary>
    public (int Start, int Count) VectorField(int table, int slot, int elementSize, int alignment, string what)
    {
        int at = Reference(table, slot, what);
        return at == 0 ? (0, 0) : Vector(at, elementSize, alignment, what);
    }

    /// <summary>The position the uoffset at <paramref name="at"/> points to.</summary>
    public int Deref(int at, string what)
    {
        Need(at, 4, 4, what);
        long target = (long)at + BinaryPrimitives.ReadUInt32LittleEndian(_buffer[at..]);
        Need(target, 1, 1, what);
        return (int)target;
    }

    private void Need(long at, long size, int alignment, string what)
    {
        if (at < 0 || size < 0 || at + size > _buffer.Length)
        {
            throw Bad(what, $"{size} bytes at offset {at}", $"inside the file's {_buffer.Length} bytes");
        }
        if (alignment > 1 && at % alignment != 0)
        {
            throw Bad(what, $"offset {at}", $"a multiple of {alignment} (FlatBuffers alignment)");
        }
    }

    private OnnxLoraException Bad(string what, string found, string expected) => OnnxLoraException.Invalid(_file, what, found, expected);
}
