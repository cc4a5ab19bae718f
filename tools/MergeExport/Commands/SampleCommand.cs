using System.CommandLine;
using OnnxLora.MergeExport.Internals;
using OnnxLora.Training.Sample;

namespace OnnxLora.MergeExport.Commands;

/// <summary>
/// <c>sample --out DIR [--kind llama|bert-cls]</c>: writes the embedded default sample (a tiny LLaMA checkpoint,
/// its tokenizer and task data) or the BERT classification sample (made by <see cref="ClassifierSample"/>).
/// </summary>
internal sealed class SampleCommand : CliCommand
{
    private readonly Option<string> _out = new("--out") { Description = "Folder to create for the sample.", Required = true };
    private enum SampleKind
    {
        Llama,
        BertClassifier,
    }

    private readonly ChoiceOption<SampleKind> _kind = new("--kind", "llama (the embedded tiny-llama: checkpoint, tokenizer, task data) or bert-cls (tiny-bert-cls: a BertForSequenceClassification checkpoint and pre-tokenized task data).",
        SampleKind.Llama, ("llama", SampleKind.Llama), ("bert-cls", SampleKind.BertClassifier));

    public SampleCommand(CliContext context)
        : base("sample", "Write a sample: the embedded tiny LLaMA-family checkpoint (default) or the tiny BERT classifier.", context)
    {
        Options.Add(_out);
        Options.Add(_kind);
    }

    protected override int Execute(ParseResult parse)
    {
        string dir = Path.GetFullPath(parse.GetValue(_out)!);
        if (_kind.Read(parse) == SampleKind.BertClassifier)
        {
            ClassifierSample.Generate(dir, overwrite: Context.Force);
        }
        else
        {
            SampleGenerator.WriteEmbedded(dir, Context.Force);
        }
        if (Context.Json)
        {
            Context.Out.WriteLine(new CommandResult("sample", "passed") { Outputs = { ["sample"] = dir } }.ToJson());
        }
        else
        {
            Context.Info($"sample written to {dir} ({string.Join(", ", Directory.GetFiles(dir).Select(Path.GetFileName).Order(StringComparer.Ordinal))})");
        }
        return Cli.Success;
    }
}
