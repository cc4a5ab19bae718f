using System.CommandLine;

namespace OnnxLora.MergeExport.Commands;

/// <summary>
/// Base of every verb: binds the global switches, runs <see cref="Execute"/>, and turns the
/// project's documented error types into a one-line message and exit code 2 (stack trace only
/// with --verbose). Anything else is a bug and propagates.
/// </summary>
internal abstract class CliCommand : Command
{
    protected CliCommand(string name, string description, CliContext context)
        : base(name, description)
    {
        Context = context;
        SetAction(parse =>
        {
            Context.Bind(parse);
            try
            {
                return Execute(parse);
            }
            catch (Exception e) when (IsUserError(e))
            {
                Context.Error.WriteLine($"merge-export {Name}: error: {OneLine(e.Message)}");
                if (Context.Verbose)
                {
                    Context.Error.WriteLine(e.ToString());
                }
                return Cli.BadInput;
            }
            catch (OperationCanceledException)
            {
                Context.Error.WriteLine($"merge-export {Name}: cancelled; no partial outputs were left.");
                return Cli.Cancelled;
            }
        });
    }

    protected CliContext Context { get; }

    protected abstract int Execute(ParseResult parse);

    internal static bool IsUserError(Exception e) => e is InvalidDataException or ArgumentException or IOException
        or UnauthorizedAccessException or KeyNotFoundException or NotSupportedException or FormatException;

    private static string OneLine(string message) => message.ReplaceLineEndings(" ").Trim();
}
