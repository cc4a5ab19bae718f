using System.Buffers.Binary;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.RegularExpressions;
using OnnxLora.Core;

namespace OnnxLora.Validate.Internals;

/// <summary>
/// Reads one array from a NumPy .npy file (format versions 1.0, 2.0 and 3.0; little-endian int64, int32, float32,
/// float16 or bool; C order). The header is validated, and the data size it implies is checked against the file's
/// real size before anything is allocated.
/// </summary>
internal static partial class NpyReader
{
    private const int MaxHeader = 1 << 20;
    private static readonly byte[] Magic = [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y'];

    public sealed record NpyArray(DType ElementType, long[] Shape, Array Data);

    public static NpyArray Read(string path)
    {
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        long fileLength = fs.Length;
        Span<byte> preamble = stackalloc byte[12];
        if (fileLength < 10)
        {
            throw ValidateThrow.Invalid(path, "npy preamble", $"{fileLength} bytes", "at least 10 bytes");
        }
        fs.ReadExactly(preamble[..10]);
        if (!preamble[..6].SequenceEqual(Magic))
        {
            throw ValidateThrow.Invalid(path, "npy magic", Convert.ToHexString(preamble[..6]), "93 'NUMPY'");
        }
        byte major = preamble[6];
        long headerLength;
        int preambleLength;
        if (major == 1)
        {
            headerLength = BinaryPrimitives.ReadUInt16LittleEndian(preamble[8..10]);
            preambleLength = 10;
        }
        else if (major is 2 or 3)
        {
            if (fileLength < 12)
            {
                throw ValidateThrow.Invalid(path, "npy preamble", $"{fileLength} bytes", "at least 12 bytes");
            }
            fs.ReadExactly(preamble[10..12]);
            headerLength = BinaryPrimitives.ReadUInt32LittleEndian(preamble[8..12]);
            preambleLength = 12;
        }
        else
        {
            throw ValidateThrow.Invalid(path, "npy format version", $"{major}.{preamble[7]}", "1.0, 2.0 or 3.0");
        }
        if (headerLength > MaxHeader || preambleLength + headerLength > fileLength)
        {
            throw ValidateThrow.Invalid(path, "npy header length", headerLength.ToString(CultureInfo.InvariantCulture),
                $"at most {Math.Min(MaxHeader, fileLength - preambleLength)} (the bytes after the preamble)");
        }
        var headerBytes = new byte[headerLength];
        fs.ReadExactly(headerBytes);
        string header = (major == 3 ? Encoding.UTF8 : Encoding.Latin1).GetString(headerBytes);
        var (kind, shape) = ParseHeader(path, header);

        long count = 1;
        foreach (long d in shape)
        {
            if (d != 0 && count > Array.MaxLength / d)
            {
                throw ValidateThrow.Invalid(path, "npy shape", $"({string.Join(", ", shape)})", "at most one array's worth of elements");
            }
            count *= d;
        }
        int itemSize = kind.SizeOf();
        long dataBytes = fileLength - preambleLength - headerLength;
        if (dataBytes != count * itemSize)
        {
            throw ValidateThrow.Invalid(path, "npy data", $"{dataBytes} bytes",
                $"{count * itemSize} bytes ({count} elements of {itemSize} bytes for shape ({string.Join(", ", shape)}))");
        }
        Array data = kind switch
        {
            DType.I64 => new long[count],
            DType.I32 => new int[count],
            DType.F32 => new float[count],
            DType.F16 => new Half[count],
            _ => new bool[count],
        };
        Span<byte> target = data switch
        {
            long[] a => MemoryMarshal.AsBytes(a.AsSpan()),
            int[] a => MemoryMarshal.AsBytes(a.AsSpan()),
            float[] a => MemoryMarshal.AsBytes(a.AsSpan()),
            Half[] a => MemoryMarshal.AsBytes(a.AsSpan()),
            bool[] a => MemoryMarshal.AsBytes(a.AsSpan()),
            _ => throw new InvalidOperationException("unreachable"),
        };
        fs.ReadExactly(target);
        if (data is bool[] flags)
        {
            var raw = MemoryMarshal.AsBytes(flags.AsSpan());
            for (int i = 0; i < raw.Length; i++)
            {
                if (raw[i] > 1)
                {
                    throw ValidateThrow.Invalid(path, $"npy bool element {i}", raw[i].ToString(CultureInfo.InvariantCulture), "0 or 1");
                }
            }
        }
        return new NpyArray(kind, shape, data);
    }

    internal static (DType Kind, long[] Shape) ParseHeader(string path, string header)
    {
        string h = header.Trim();
        if (!h.StartsWith('{') || !h.EndsWith('}'))
        {
            throw ValidateThrow.Invalid(path, "npy header", Shorten(h), "a Python dict literal {...}");
        }
        var descr = DescrRegex().Match(h);
        if (!descr.Success)
        {
            throw ValidateThrow.Invalid(path, "npy header 'descr'", "no 'descr' entry", "'descr': '<i8' (or <i4, <f4, <f2, |b1)");
        }
        var kind = descr.Groups[1].Value switch
        {
            "<i8" or "=i8" => DType.I64,
            "<i4" or "=i4" => DType.I32,
            "<f4" or "=f4" => DType.F32,
            "<f2" or "=f2" => DType.F16,
            "|b1" => DType.Bool,
            string other => throw ValidateThrow.Invalid(path, "npy header 'descr'", $"'{other}'",
                "a little-endian '<i8', '<i4', '<f4', '<f2' or '|b1'"),
        };
        var fortran = FortranRegex().Match(h);
        if (!fortran.Success)
        {
            throw ValidateThrow.Invalid(path, "npy header 'fortran_order'", "no 'fortran_order' entry", "'fortran_order': False");
        }
        if (fortran.Groups[1].Value != "False")
        {
            throw ValidateThrow.Invalid(path, "npy header 'fortran_order'", fortran.Groups[1].Value, "False (C order)");
        }
        var shapeMatch = ShapeRegex().Match(h);
        if (!shapeMatch.Success)
        {
            throw ValidateThrow.Invalid(path, "npy header 'shape'", "no 'shape' entry", "'shape': (d0, d1, ...)");
        }
        var dims = new List<long>();
        foreach (string part in shapeMatch.Groups[1].Value.Split(',', StringSplitOptions.TrimEntries))
        {
            if (part.Length == 0)
            {
                continue;
            }
            string digits = part.EndsWith('L') ? part[..^1] : part;
            if (!long.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out long d))
            {
                throw ValidateThrow.Invalid(path, "npy header 'shape'", $"({shapeMatch.Groups[1].Value})", "a tuple of non-negative integers");
            }
            dims.Add(d);
        }
        return (kind, [.. dims]);
    }


    private static string Shorten(string s) => s.Length <= 80 ? $"'{s}'" : $"'{s[..80]}…'";

    [GeneratedRegex(@"['""]descr['""]\s*:\s*['""]([^'""]*)['""]")]
    private static partial Regex DescrRegex();

    [GeneratedRegex(@"['""]fortran_order['""]\s*:\s*(\w+)")]
    private static partial Regex FortranRegex();

    [GeneratedRegex(@"['""]shape['""]\s*:\s*\(([^)]*)\)")]
    private static partial Regex ShapeRegex();
}
