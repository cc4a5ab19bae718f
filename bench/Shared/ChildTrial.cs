using System.Diagnostics;
using System.Globalization;
using System.Reflection;

namespace OnnxLora.Bench;

/// <summary>
/// A benchmark trial run in a child process of the benchmark itself, so that its peak resident set (VmHWM) is its own;
/// the child ends by printing <see cref="Report"/>. Linked into the benchmarks that compare whole operations (ExportBench, MergeBench).
/// </summary>
internal static class ChildTrial
{
    /// <summary>Runs this benchmark's executable with <paramref name="childArgs"/>; returns the child's time and peak RSS.</summary>
    /// <exception cref="InvalidOperationException">The child failed (its stderr is in the message).</exception>
    public static (double Seconds, long Kb) Run(params string[] childArgs)
    {
        var psi = new ProcessStartInfo(Environment.ProcessPath!) { RedirectStandardOutput = true, RedirectStandardError = true };
        if (Path.GetFileNameWithoutExtension(Environment.ProcessPath!) == "dotnet")
        {
            psi.ArgumentList.Add(Assembly.GetEntryAssembly()!.Location);
        }
        foreach (string a in childArgs)
        {
            psi.ArgumentList.Add(a);
        }
        using var p = Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEndAsync();
        string stdout = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0)
        {
            throw new InvalidOperationException($"child {string.Join(' ', childArgs)} failed: {stderr.Result}");
        }
        var parts = stdout.Trim().Split('\n')[^1].Split(' ');
        return (double.Parse(parts[0], CultureInfo.InvariantCulture), long.Parse(parts[1], CultureInfo.InvariantCulture));
    }

    /// <summary>The child's last line: seconds and this process's peak RSS in KiB.</summary>
    public static string Report(double seconds) => string.Create(CultureInfo.InvariantCulture, $"{seconds:F3} {VmHwmKb()}");

    /// <summary>Peak resident set (VmHWM) of this process in KiB, from /proc/self/status; -1 where absent.</summary>
    public static long VmHwmKb()
    {
        foreach (string line in File.ReadLines("/proc/self/status"))
        {
            if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
            {
                return long.Parse(line[6..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
            }
        }
        return -1;
    }

    public static double Median(IEnumerable<double> values)
    {
        var v = values.Order().ToArray();
        return v.Length % 2 == 1 ? v[v.Length / 2] : (v[(v.Length / 2) - 1] + v[v.Length / 2]) / 2;
    }
}
