using System.Globalization;

namespace OnnxLora.Validate.Internals;

/// <summary>Resident and peak resident memory of this process from /proc/self/status (Linux); null elsewhere.</summary>
internal static class ProcessMemory
{
    /// <summary>VmHWM: the peak resident set size so far.</summary>
    public static long? PeakResidentBytes() => ReadKb("VmHWM:");

    /// <summary>VmRSS: the resident set size now.</summary>
    public static long? ResidentBytes() => ReadKb("VmRSS:");

    internal static long? ParseKb(IEnumerable<string> lines, string key)
    {
        foreach (string line in lines)
        {
            if (!line.StartsWith(key, StringComparison.Ordinal))
            {
                continue;
            }
            string[] parts = line[key.Length..].Split(' ', '\t', StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length == 2 && parts[1] == "kB" && long.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out long kb))
            {
                return kb * 1024;
            }
            return null;
        }
        return null;
    }

    private static long? ReadKb(string key)
    {
        const string status = "/proc/self/status";
        try
        {
            return File.Exists(status) ? ParseKb(File.ReadLines(status), key) : null;
        }
        catch (IOException)
        {
            return null;
        }
    }
}
