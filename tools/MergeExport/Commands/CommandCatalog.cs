using System.CommandLine;

namespace OnnxLora.MergeExport.Commands;

/// <summary>Every verb of the tool, in help order.</summary>
internal static class CommandCatalog
{
    public static IEnumerable<Command> Create(CliContext context)
    {
        yield return new RunCommand(context);
        yield return new SampleCommand(context);
        yield return new TrainCommand(context);
        yield return new MergeCommand(context);
        yield return new ExportCommand(context);
        yield return new ValidateCommand(context);
        yield return new GenerateCommand(context);
        yield return new CompareCommand(context);
        yield return new InspectCommand(context);
    }
}
