using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;

namespace OnnxLora.Validate.Internals;

/// <summary>
/// The machine fingerprint of a report (<see cref="MachineReport"/>), read from what Linux exposes without extra
/// tools: /proc/cpuinfo, /proc/meminfo and, for CUDA, /proc/driver/nvidia. Elsewhere the fields that cannot be read
/// are "unknown" or null.
/// </summary>
internal static partial class MachineInfo
{
    private const string NvidiaRoot = "/proc/driver/nvidia";

    /// <summary>This machine; <paramref name="cudaDeviceId"/> adds the GPU the models ran on.</summary>
    public static MachineReport Current(int? cudaDeviceId) => new(
        RuntimeInformation.OSDescription,
        RuntimeInformation.ProcessArchitecture.ToString(),
        CpuModel(ReadLines("/proc/cpuinfo")) ?? "unknown",
        Environment.ProcessorCount,
        ProcessMemory.ParseKb(ReadLines("/proc/meminfo"), "MemTotal:") ?? Positive(GC.GetGCMemoryInfo().TotalAvailableMemoryBytes),
        cudaDeviceId is int id ? Gpu(NvidiaRoot, id, Environment.GetEnvironmentVariable("CUDA_VISIBLE_DEVICES")) : null);

    /// <summary>The first "model name" of /proc/cpuinfo (x86), else its "Hardware" or "CPU part" line (some Arm kernels).</summary>
    internal static string? CpuModel(IEnumerable<string> cpuinfo)
    {
        string? fallback = null;
        foreach (string line in cpuinfo)
        {
            int colon = line.IndexOf(':', StringComparison.Ordinal);
            if (colon < 0)
            {
                continue;
            }
            string key = line[..colon].Trim();
            string value = line[(colon + 1)..].Trim();
            if (value.Length == 0)
            {
                continue;
            }
            if (key == "model name")
            {
                return value;
            }
            if (fallback is null && key is "Hardware" or "CPU part")
            {
                fallback = key == "CPU part" ? $"CPU part {value}" : value;
            }
        }
        return fallback;
    }

    /// <summary>
    /// The CUDA device's model name and the driver version from the NVIDIA kernel module's /proc files under
    /// <paramref name="root"/>. GPUs are listed by PCI bus id; the device ordinal is mapped through a numeric
    /// CUDA_VISIBLE_DEVICES. When every GPU has the same model (the usual case) the mapping does not matter.
    /// </summary>
    internal static GpuReport Gpu(string root, int deviceId, string? visibleDevices)
    {
        string? driver = null;
        string versionFile = Path.Combine(root, "version");
        if (File.Exists(versionFile))
        {
            var match = DriverVersion().Match(ReadLines(versionFile).FirstOrDefault() ?? "");
            driver = match.Success ? match.Groups[1].Value : null;
        }
        var names = new List<string?>();
        string gpus = Path.Combine(root, "gpus");
        if (Directory.Exists(gpus))
        {
            foreach (string dir in Directory.GetDirectories(gpus).Order(StringComparer.Ordinal))
            {
                names.Add(ReadLines(Path.Combine(dir, "information"))
                    .Select(l => l.Split(':', 2))
                    .Where(kv => kv.Length == 2 && kv[0].Trim() == "Model")
                    .Select(kv => kv[1].Trim())
                    .FirstOrDefault());
            }
        }
        string? name = null;
        if (names.Count > 0 && names.All(n => n is not null && n == names[0]))
        {
            name = names[0];
        }
        else
        {
            int index = deviceId;
            if (!string.IsNullOrWhiteSpace(visibleDevices))
            {
                string[] listed = visibleDevices.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
                index = deviceId < listed.Length && int.TryParse(listed[deviceId], NumberStyles.None, CultureInfo.InvariantCulture, out int physical) ? physical : -1;
            }
            name = index >= 0 && index < names.Count ? names[index] : null;
        }
        return new GpuReport(deviceId, name, driver);
    }

    private static long? Positive(long v) => v > 0 ? v : null;

    private static IEnumerable<string> ReadLines(string path)
    {
        try
        {
            return File.Exists(path) ? File.ReadAllLines(path) : [];
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return [];
        }
    }

    /// <summary>"NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  …" or "… Open Kernel Module for x86_64  570.86.15  …".</summary>
    [GeneratedRegex(@"Kernel Module(?: for \S+)?\s+(\d+(?:\.\d+)+)")]
    private static partial Regex DriverVersion();
}
