using System.Globalization;

namespace OnnxLora.TrainingBench;

/// <summary>Resident and peak resident memory of this process, from /proc/self/status (Linux).</summary>
internal static class ProcessMemory
{
    /// <summary>VmRSS in KiB (0 where /proc is unavailable).</summary>
    public static long RssKiB() => Field("VmRSS:");

    /// <summary>VmHWM (peak RSS) in KiB (0 where /proc is unavailable).</summary>
    public static long PeakKiB() => Field("VmHWM:");

    private static long Field(string name)
    {
        const string path = "/proc/self/status";
        if (!File.Exists(path))
        {
            return 0;
        }
        foreach (string line in File.ReadLines(path))
        {
            if (line.StartsWith(name, StringComparison.Ordinal))
            {
                return long.Parse(line[name.Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
            }
        }
        return 0;
    }
}
