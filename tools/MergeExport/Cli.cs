using System.CommandLine;
using OnnxLora.MergeExport.Commands;

namespace OnnxLora.MergeExport;

/// <summary>
/// Builds the merge-export command line and runs it. Exit codes: 0 success, 1 a validation gate
/// failed, 2 bad input or usage, 130 cancelled (Ctrl+C).
/// </summary>
internal static class Cli
{
    public const int Success = 0;
    public const int GateFailed = 1;
    public const int BadInput = 2;
    public const int Cancelled = 130;

    public static RootCommand BuildRoot(CliContext context)
    {
        var root = new RootCommand("OnnxLora merge-export: train, merge, export and validate LoRA adapters.");
        root.Options.Add(GlobalOptions.Verbose);
        root.Options.Add(GlobalOptions.Quiet);
        root.Options.Add(GlobalOptions.Json);
        root.Options.Add(GlobalOptions.Force);
        foreach (var command in CommandCatalog.Create(context))
        {
            root.Subcommands.Add(command);
        }
        return root;
    }

    /// <summary>Runs the tool in-process; used by Program and by the CLI tests.</summary>
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr, CancellationToken cancellationToken = default)
    {
        var context = new CliContext(stdout, stderr, cancellationToken);
        var root = BuildRoot(context);
        ParseResult parse = root.Parse(args);
        if (parse.Errors.Count > 0)
        {
            string errors = string.Join(" ", parse.Errors.Select(e => e.Message.ReplaceLineEndings(" ").Trim()));
            stderr.WriteLine($"merge-export: {errors} (see merge-export --help)");
            return BadInput;
        }
        return parse.Invoke(new InvocationConfiguration { Output = stdout, Error = stderr, EnableDefaultExceptionHandler = false });
    }
}
