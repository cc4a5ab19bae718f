using System.CommandLine;
using OnnxLora.Core;
using OnnxLora.MergeExport.Internals;

namespace OnnxLora.MergeExport.Commands;

/// <summary>
/// Base of every verb: binds the global switches, runs <see cref="Execute"/>, and turns any failure into one line on
/// stderr (and, with --json, one error object on stdout) with an exit code chosen by the error's kind, never by its
/// .NET type:
/// <list type="bullet">
/// <item><see cref="OnnxLoraException"/>: its <see cref="ErrorKind"/> (bad input 2, internal 70). Everything the user
/// can get wrong with a file, folder or option is raised as this, with kind bad input.</item>
/// <item><see cref="OperationCanceledException"/>: cancelled, 130.</item>
/// <item><see cref="IOException"/> (of any subtype) and <see cref="UnauthorizedAccessException"/> that are not ours:
/// what the operating system says about the user's paths and machine (no permission, disk full, a file locked or
/// vanished, a truncated file). They are the user's environment, reported like bad input (2) with the OS's message:
/// wrapping each file-system call would only repeat it.</item>
/// <item>Anything else, including an <see cref="ArgumentException"/> or <see cref="KeyNotFoundException"/> from an
/// internal check: a bug in merge-export, 70, reported as one.</item>
/// </list>
/// Stack traces are printed only with --verbose.
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
            catch (Exception e)
            {
                return Fail(e);
            }
        });
    }

    protected CliContext Context { get; }

    protected abstract int Execute(ParseResult parse);

    /// <summary>What kind of failure <paramref name="e"/> is, as listed in the class summary.</summary>
    internal static ErrorKind KindOf(Exception e) => e switch
    {
        OnnxLoraException x => x.Kind,
        OperationCanceledException => ErrorKind.Cancelled,
        IOException or UnauthorizedAccessException => ErrorKind.BadInput,
        _ => ErrorKind.Internal,
    };

    private int Fail(Exception e)
    {
        ErrorKind kind = KindOf(e);
        string message = kind switch
        {
            ErrorKind.BadInput => OneLine(e.Message),
            ErrorKind.Cancelled => "cancelled; no partial outputs were left.",
            _ => $"internal error: {(e is OnnxLoraException ? "" : e.GetType().Name + ": ")}{OneLine(e.Message)} — this is a bug; please report it (run with --verbose for the stack trace)",
        };
        Context.Error.WriteLine(kind == ErrorKind.BadInput ? $"merge-export {Name}: error: {message}" : $"merge-export {Name}: {message}");
        if (Context.Verbose && kind != ErrorKind.Cancelled)
        {
            Context.Error.WriteLine(e.ToString());
        }
        if (Context.Json)
        {
            Context.Out.WriteLine(CommandResult.Failure(Name, kind, message).ToJson());
        }
        return Cli.ExitCodeOf(kind);
    }

    private static string OneLine(string message) => message.ReplaceLineEndings(" ").Trim();
}
