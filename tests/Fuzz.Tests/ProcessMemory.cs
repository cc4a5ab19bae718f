using System.Globalization;

namespace OnnxLora.Fuzz.Tests;

/// <summary>
/// The process's resident memory from /proc/self/status (Linux): VmRSS now, VmHWM the peak. Writing "5"
/// to /proc/self/clear_refs resets the peak to the current size. Elsewhere every reading is null and the
/// campaigns skip their resident-memory bound.
/// </summary>
internal static class ProcessMemory
{
    private const string Status = "/proc/self/status";

    public static long? ResidentBytes() => Read("VmRSS:");

    public static long? PeakResidentBytes() => Read("VmHWM:");

    /// <summary>Resets the peak to the current resident size; false where the kernel does not allow it.</summary>
    public static bool TryResetPeak()
    {
        try
        {
            File.WriteAllText("/proc/self/clear_refs", "5");
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    private static long? Read(string field)
    {
        if (!File.Exists(Status))
        {
            return null;
        }
        foreach (string line in File.ReadLines(Status))
        {
            if (line.StartsWith(field, StringComparison.Ordinal))
            {
                // "VmHWM:\t  123456 kB"
                string[] parts = line[field.Length..].Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
                return long.Parse(parts[0], CultureInfo.InvariantCulture) * 1024;
            }
        }
        return null;
    }
}
