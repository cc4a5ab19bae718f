using System.CommandLine;
using OnnxLora.MergeExport.Internals;
using OnnxLora.Training.Sample;

namespace OnnxLora.MergeExport.Commands;

/// <summary><c>sample --out DIR</c>: writes the embedded default sample (a tiny LLaMA checkpoint, its tokenizer and task data).</summary>
internal sealed class SampleCommand : CliCommand
{
    private readonly Option<string> _out = new("--out") { Description = "Folder to create for the sample.", Required = true };

    public SampleCommand(CliContext context)
        : base("sample", "Write the embedded default sample: a tiny LLaMA-family checkpoint, tokenizer and task data.", context)
    {
        Options.Add(_out);
    }

    protected override int Execute(ParseResult parse)
    {
        string dir = Path.GetFullPath(parse.GetValue(_out)!);
        SampleGenerator.WriteEmbedded(dir, Context.Force);
        if (Context.Json)
        {
            Context.Out.WriteLine(new CommandResult("sample", "passed") { Outputs = { ["sample"] = dir } }.ToJson());
        }
        else
        {
            Context.Info($"sample written to {dir} ({string.Join(", ", SampleGenerator.FileNames)})");
        }
        return Cli.Success;
    }
}
