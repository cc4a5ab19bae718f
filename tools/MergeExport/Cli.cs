using System.CommandLine;
using OnnxLora.Core;
using OnnxLora.MergeExport.Commands;
using OnnxLora.MergeExport.Internals;

namespace OnnxLora.MergeExport;

/// <summary>
/// Builds the merge-export command line and runs it. Exit codes: 0 success, 1 a validation gate failed, 2 bad input
/// or usage, 70 internal error (a bug in merge-export), 130 cancelled (Ctrl+C). The kind of an error decides its
/// code, never its .NET type (see <see cref="CliCommand"/>).
/// </summary>
internal static class Cli
{
    public const int Success = 0;
    public const int GateFailed = 1;
    public const int BadInput = 2;

    /// <summary>EX_SOFTWARE of sysexits.h: an internal software error.</summary>
    public const int InternalError = 70;

    public const int Cancelled = 130;

    public static int ExitCodeOf(ErrorKind kind) => kind switch
    {
        ErrorKind.BadInput => BadInput,
        ErrorKind.Cancelled => Cancelled,
        _ => InternalError,
    };

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
        return Run(BuildRoot(context), context, args);
    }

    /// <summary>Runs a command line built on <paramref name="context"/> (the CLI tests add a verb of their own to it).</summary>
    internal static int Run(RootCommand root, CliContext context, string[] args)
    {
        ParseResult parse = root.Parse(args);
        if (parse.Errors.Count > 0)
        {
            string errors = string.Join(" ", parse.Errors.Select(e => e.Message.ReplaceLineEndings(" ").Trim())) + " (see merge-export --help)";
            context.Error.WriteLine($"merge-export: {errors}");
            if (JsonRequested(parse))
            {
                string command = parse.CommandResult.Command is RootCommand ? "merge-export" : parse.CommandResult.Command.Name;
                context.Out.WriteLine(CommandResult.Failure(command, ErrorKind.BadInput, errors).ToJson());
            }
            return BadInput;
        }
        return parse.Invoke(new InvocationConfiguration { Output = context.Out, Error = context.Error, EnableDefaultExceptionHandler = false });
    }

    /// <summary>Whether --json was given, even on a command line that does not parse.</summary>
    private static bool JsonRequested(ParseResult parse) =>
        parse.GetResult(GlobalOptions.Json) is { } json && !parse.Errors.Any(e => e.SymbolResult == json) && parse.GetValue(GlobalOptions.Json);
}
