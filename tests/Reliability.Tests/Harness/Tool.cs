using System.Diagnostics;
using System.Globalization;

namespace OnnxLora.Reliability;

/// <summary>What a finished merge-export child process did.</summary>
internal sealed record ToolRun(int ExitCode, string Out, string Err, TimeSpan Elapsed, long? PeakRssKiB)
{
    public override string ToString() => $"exit {ExitCode} after {Elapsed.TotalSeconds:F2} s\nstdout: {Out}\nstderr: {Err}";
}

/// <summary>
/// Runs the built merge-export tool (merge-export.dll, copied beside this assembly by the project
/// reference) as a child process with <c>dotnet</c>, the way a user runs it.
/// </summary>
internal static class Tool
{
    private static readonly Lazy<string> RepoRootLazy = new(FindRepoRoot);

    public static string Dll => Path.Combine(AppContext.BaseDirectory, "merge-export.dll");

    /// <summary>The repository root (holds OnnxLora.sln and models/).</summary>
    public static string RepoRoot => RepoRootLazy.Value;

    public static string TinyLlama => Path.Combine(RepoRoot, "models", "tiny-llama");

    public static string TinyLlamaLora => Path.Combine(RepoRoot, "models", "tiny-llama-lora");

    /// <summary>The dotnet host: the one that runs us when it is dotnet, else the one on PATH.</summary>
    public static string DotnetHost
    {
        get
        {
            string? fromCli = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH");
            if (!string.IsNullOrEmpty(fromCli) && File.Exists(fromCli))
            {
                return fromCli;
            }
            string? self = Environment.ProcessPath;
            return self is not null && Path.GetFileNameWithoutExtension(self) == "dotnet" ? self : "dotnet";
        }
    }

    /// <summary>Whether GNU time is there to measure a child's peak memory.</summary>
    public static bool CanMeasurePeakMemory => File.Exists("/usr/bin/time");

    /// <summary>Starts merge-export with <paramref name="args"/>; output is read in the background.</summary>
    public static Started Start(IEnumerable<string> args, IDictionary<string, string>? environment = null, string? peakMemoryFile = null)
    {
        var psi = new ProcessStartInfo
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = RepoRoot,
        };
        if (peakMemoryFile is not null)
        {
            // GNU time execs the tool as its own child and writes its peak resident size (KiB) to the file.
            psi.FileName = "/usr/bin/time";
            psi.ArgumentList.Add("-f");
            psi.ArgumentList.Add("%M");
            psi.ArgumentList.Add("-o");
            psi.ArgumentList.Add(peakMemoryFile);
            psi.ArgumentList.Add(DotnetHost);
        }
        else
        {
            psi.FileName = DotnetHost;
        }
        psi.ArgumentList.Add(Dll);
        foreach (string a in args)
        {
            psi.ArgumentList.Add(a);
        }
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        if (environment is not null)
        {
            foreach (var (k, v) in environment)
            {
                psi.Environment[k] = v;
            }
        }
        var process = Process.Start(psi) ?? throw new InvalidOperationException("could not start dotnet");
        return new Started(process, peakMemoryFile);
    }

    /// <summary>Runs merge-export to the end (or kills it after <paramref name="timeout"/> and throws).</summary>
    public static ToolRun Run(IEnumerable<string> args, TimeSpan? timeout = null, IDictionary<string, string>? environment = null, bool measurePeakMemory = false)
    {
        string? peakFile = measurePeakMemory && CanMeasurePeakMemory ? Path.Combine(Path.GetTempPath(), $"onnxlora-peak-{Guid.NewGuid():N}.txt") : null;
        using var started = Start(args, environment, peakFile);
        return started.WaitForExit(timeout ?? TimeSpan.FromMinutes(3));
    }

    public static ToolRun Run(params string[] args) => Run((IEnumerable<string>)args);

    private static string FindRepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "OnnxLora.sln")))
            {
                return dir.FullName;
            }
        }
        throw new DirectoryNotFoundException($"{AppContext.BaseDirectory}: no OnnxLora.sln above the test assembly.");
    }

    /// <summary>A running child; disposing kills it if it is still running.</summary>
    internal sealed class Started : IDisposable
    {
        private readonly Task<string> _out;
        private readonly Task<string> _err;
        private readonly string? _peakFile;
        private readonly Stopwatch _clock = Stopwatch.StartNew();

        public Started(Process process, string? peakFile)
        {
            Process = process;
            _peakFile = peakFile;
            _out = process.StandardOutput.ReadToEndAsync();
            _err = process.StandardError.ReadToEndAsync();
        }

        public Process Process { get; }

        /// <summary>Waits up to <paramref name="delay"/>; true if it exited by then.</summary>
        public bool ExitsWithin(TimeSpan delay) => Process.WaitForExit(delay);

        /// <summary>Kills the whole process tree (no chance to clean up) and waits for it to be gone.</summary>
        public void Kill()
        {
            try
            {
                Process.Kill(entireProcessTree: true);
            }
            catch (InvalidOperationException)
            {
                // Already exited.
            }
            Process.WaitForExit();
        }

        public ToolRun WaitForExit(TimeSpan timeout)
        {
            if (!Process.WaitForExit(timeout))
            {
                Kill();
                throw new TimeoutException($"merge-export did not finish within {timeout.TotalSeconds:F0} s: {_err.Result}");
            }
            Process.WaitForExit();
            long? peak = null;
            if (_peakFile is not null && File.Exists(_peakFile))
            {
                string text = File.ReadAllText(_peakFile).Trim();
                // GNU time prefixes "Command exited with non-zero status N" on its own line.
                string last = text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)[^1];
                peak = long.Parse(last, CultureInfo.InvariantCulture);
                File.Delete(_peakFile);
            }
            return new ToolRun(Process.ExitCode, _out.Result, _err.Result, _clock.Elapsed, peak);
        }

        public void Dispose()
        {
            if (!Process.HasExited)
            {
                Kill();
            }
            Process.Dispose();
        }
    }
}
