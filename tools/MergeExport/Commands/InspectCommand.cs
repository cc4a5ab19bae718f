using System.CommandLine;
using System.Text.Json;
using OnnxLora.Core;
using OnnxLora.Core.Safetensors;

namespace OnnxLora.MergeExport.Commands;

/// <summary><c>inspect PATH</c>: what is in a safetensors file or checkpoint folder.</summary>
internal sealed class InspectCommand : CliCommand
{
    private readonly Argument<string> _path = new("path") { Description = "A .safetensors file or a checkpoint folder." };

    public InspectCommand(CliContext context)
        : base("inspect", "Show what is in a safetensors file, a checkpoint folder, an adapter or an ONNX model.", context)
    {
        Arguments.Add(_path);
    }

    protected override int Execute(ParseResult parse)
    {
        string path = parse.GetValue(_path)!;
        if (Directory.Exists(path))
        {
            using var ckpt = SafetensorsCheckpoint.Open(path);
            Report(path, ckpt.Tensors);
        }
        else if (File.Exists(path))
        {
            using var file = SafetensorsFile.Open(path);
            Report(path, file.Tensors);
        }
        else
        {
            throw new FileNotFoundException($"{path}: no such file or folder.");
        }
        return Cli.Success;
    }

    private void Report(string path, IReadOnlyList<TensorInfo> tensors)
    {
        long bytes = tensors.Sum(t => t.ByteLength);
        if (Context.Json)
        {
            var doc = new
            {
                path,
                kind = "safetensors",
                tensors = tensors.Select(t => new { name = t.Name, dtype = t.DType.SafetensorsName(), shape = t.Shape }),
                totalBytes = bytes,
            };
            Context.Out.WriteLine(JsonSerializer.Serialize(doc));
            return;
        }
        Context.Out.WriteLine($"{path}: safetensors, {tensors.Count} tensors, {bytes:N0} bytes");
        foreach (var t in tensors)
        {
            Context.Out.WriteLine($"  {t.Name,-60} {t.DType.SafetensorsName(),-5} {t.Spec.ShapeText}");
        }
    }
}
