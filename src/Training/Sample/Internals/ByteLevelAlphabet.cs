namespace OnnxLora.Training.Sample.Internals;

/// <summary>
/// GPT-2's byte-to-character table used by byte-level BPE: printable bytes map to themselves, the
/// others to code points from U+0100 upwards, so every byte is a visible one-character symbol.
/// </summary>
internal static class ByteLevelAlphabet
{
    private static readonly char[] Table = BuildTable();

    /// <summary>The symbol for each byte value.</summary>
    public static char Symbol(byte b) => Table[b];

    /// <summary>The 256 symbols in byte order.</summary>
    public static IReadOnlyList<char> Symbols => Table;

    /// <summary>The byte-level form of a UTF-8 string.</summary>
    public static string Encode(string text)
    {
        var bytes = System.Text.Encoding.UTF8.GetBytes(text);
        var chars = new char[bytes.Length];
        for (int i = 0; i < bytes.Length; i++)
        {
            chars[i] = Table[bytes[i]];
        }
        return new string(chars);
    }

    private static char[] BuildTable()
    {
        var table = new char[256];
        int next = 256;
        for (int b = 0; b < 256; b++)
        {
            bool printable = b is (>= '!' and <= '~') or (>= 0xA1 and <= 0xAC) or (>= 0xAE and <= 0xFF);
            table[b] = printable ? (char)b : (char)next++;
        }
        return table;
    }
}
