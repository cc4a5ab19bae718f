using System.Buffers.Binary;
using System.Text;

namespace OnnxLora.Validate.Tests;

/// <summary>Writes .npy files the way NumPy lays them out (written here from the format description, independent of the reader).</summary>
internal static class Npy
{
    public static byte[] Bytes(string descr, long[] shape, byte[] data, int major = 1, bool fortran = false, string? headerOverride = null)
    {
        string shapeText = shape.Length == 1 ? $"({shape[0]},)" : "(" + string.Join(", ", shape) + ")";
        string dict = headerOverride ?? $"{{'descr': '{descr}', 'fortran_order': {(fortran ? "True" : "False")}, 'shape': {shapeText}, }}";
        int preamble = major == 1 ? 10 : 12;
        int total = preamble + dict.Length + 1;
        int padded = (total + 63) / 64 * 64;
        string header = dict + new string(' ', padded - total) + "\n";
        var ms = new MemoryStream();
        ms.Write([0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y', (byte)major, 0]);
        var len = new byte[major == 1 ? 2 : 4];
        if (major == 1)
        {
            BinaryPrimitives.WriteUInt16LittleEndian(len, (ushort)header.Length);
        }
        else
        {
            BinaryPrimitives.WriteUInt32LittleEndian(len, (uint)header.Length);
        }
        ms.Write(len);
        ms.Write(Encoding.ASCII.GetBytes(header));
        ms.Write(data);
        return ms.ToArray();
    }

    public static byte[] Int64(long[] values)
    {
        var b = new byte[values.Length * 8];
        for (int i = 0; i < values.Length; i++)
        {
            BinaryPrimitives.WriteInt64LittleEndian(b.AsSpan(i * 8), values[i]);
        }
        return b;
    }

    public static byte[] Float32(float[] values)
    {
        var b = new byte[values.Length * 4];
        for (int i = 0; i < values.Length; i++)
        {
            BinaryPrimitives.WriteSingleLittleEndian(b.AsSpan(i * 4), values[i]);
        }
        return b;
    }

    public static byte[] Float16(Half[] values)
    {
        var b = new byte[values.Length * 2];
        for (int i = 0; i < values.Length; i++)
        {
            BinaryPrimitives.WriteHalfLittleEndian(b.AsSpan(i * 2), values[i]);
        }
        return b;
    }

    public static string Write(string path, byte[] bytes)
    {
        File.WriteAllBytes(path, bytes);
        return path;
    }
}
