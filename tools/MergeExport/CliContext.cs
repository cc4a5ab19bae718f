using System.CommandLine;

namespace OnnxLora.MergeExport;

/// <summary>Where a command writes, and the global switches.</summary>
internal sealed class CliContext(TextWriter stdout, TextWriter stderr, CancellationToken cancellationToken)
{
    public TextWriter Out { get; } = stdout;

    public TextWriter Error { get; } = stderr;

    public CancellationToken CancellationToken { get; } = cancellationToken;

    public bool Verbose { get; private set; }

    public bool Quiet { get; private set; }

    public bool Json { get; private set; }

    public bool Force { get; private set; }

    public void Bind(ParseResult parse)
    {
        Verbose = parse.GetValue(GlobalOptions.Verbose);
        Quiet = parse.GetValue(GlobalOptions.Quiet);
        Json = parse.GetValue(GlobalOptions.Json);
        Force = parse.GetValue(GlobalOptions.Force);
    }

    /// <summary>Warnings on stderr, one line each ("warning: ..."); silent with --quiet.</summary>
    public void Warn(IEnumerable<string> warnings)
    {
        if (Quiet)
        {
            return;
        }
        foreach (string w in warnings)
        {
            Error.WriteLine($"warning: {w}");
        }
    }

    /// <summary>A progress or status line for people (silent with --quiet or --json).</summary>
    public void Info(string line)
    {
        if (!Quiet && !Json)
        {
            Out.WriteLine(line);
        }
    }
}

/// <summary>Options every command understands.</summary>
internal static class GlobalOptions
{
    public static readonly Option<bool> Verbose = new("--verbose", "-v") { Description = "Show details, and stack traces on errors.", Recursive = true };

    public static readonly Option<bool> Quiet = new("--quiet", "-q") { Description = "Print only errors and the final result.", Recursive = true };

    public static readonly Option<bool> Json = new("--json") { Description = "Print a machine-readable JSON result on stdout.", Recursive = true };

    public static readonly Option<bool> Force = new("--force") { Description = "Overwrite existing outputs (otherwise they are never clobbered).", Recursive = true };
}
