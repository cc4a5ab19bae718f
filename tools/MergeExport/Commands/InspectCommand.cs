using System.CommandLine;
using System.Text.Json;
using Onnx;
using OnnxLora.Core;
using OnnxLora.Core.Onnx;
using OnnxLora.Core.Peft;
using OnnxLora.Core.Safetensors;

namespace OnnxLora.MergeExport.Commands;

/// <summary>
/// <c>inspect PATH</c>: what is in an ONNX model, an ONNX Runtime adapter file, a safetensors file, a
/// checkpoint folder or a PEFT adapter folder. The kind is told from the path: a .onnx file, an
/// .onnx_adapter file, a folder with adapter_config.json, a folder with model.safetensors(.index.json),
/// or a .safetensors file.
/// </summary>
internal sealed class InspectCommand : CliCommand
{
    private readonly Argument<string> _path = new("path") { Description = "An .onnx model, an .onnx_adapter file, a .safetensors file, a checkpoint folder or a PEFT adapter folder." };

    private readonly Option<string[]> _adapters = new("--adapter") { Description = "Show how these adapters map onto the model's weights (nothing is written)." };
    private readonly Option<string?> _baseCheckpoint = new("--base-checkpoint") { Description = "ONNX models: the base checkpoint, to match anonymous weights by content." };

    public InspectCommand(CliContext context)
        : base("inspect", "Show what is in an ONNX model, an .onnx_adapter file, a safetensors file, a checkpoint folder or a PEFT adapter; with --adapter, the merge mapping.", context)
    {
        Arguments.Add(_path);
        Options.Add(_adapters);
        Options.Add(_baseCheckpoint);
    }

    protected override int Execute(ParseResult parse)
    {
        string path = parse.GetValue(_path)!;
        var adapters = parse.GetValue(_adapters) ?? [];
        object report;
        if (adapters.Length > 0 && File.Exists(path) && path.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase))
        {
            report = OnnxTarget.Inspect(Context, path, adapters, parse.GetValue(_baseCheckpoint));
        }
        else if (adapters.Length > 0 && Directory.Exists(path))
        {
            report = OnnxTarget.InspectCheckpoint(Context, path, adapters);
        }
        else if (adapters.Length > 0)
        {
            throw OnnxLoraException.InvalidOption("--adapter", $"{path} is neither an .onnx model nor a checkpoint folder to map the adapter onto.");
        }
        else if (Directory.Exists(path) && File.Exists(Path.Combine(path, PeftAdapterConfig.FileName)))
        {
            report = InspectAdapter(path);
        }
        else if (Directory.Exists(path))
        {
            using var ckpt = SafetensorsCheckpoint.Open(path);
            report = TensorsReport(path, "checkpoint", ckpt.Tensors);
        }
        else if (File.Exists(path) && path.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase))
        {
            report = InspectOnnx(path);
        }
        else if (File.Exists(path) && path.EndsWith(OnnxAdapterFile.Extension, StringComparison.OrdinalIgnoreCase))
        {
            report = InspectOnnxAdapter(path);
        }
        else if (File.Exists(path))
        {
            using var file = SafetensorsFile.Open(path);
            report = TensorsReport(path, "safetensors", file.Tensors);
        }
        else
        {
            throw OnnxLoraException.NotFound("file or folder", Path.GetFullPath(path));
        }
        if (Context.Json)
        {
            Context.Out.WriteLine(JsonSerializer.Serialize(report));
        }
        return Cli.Success;
    }

    private object TensorsReport(string path, string kind, IReadOnlyList<TensorInfo> tensors)
    {
        long bytes = tensors.Sum(t => t.ByteLength);
        if (!Context.Json)
        {
            Context.Out.WriteLine($"{path}: {kind}, {tensors.Count} tensors, {bytes:N0} bytes");
            foreach (var t in tensors)
            {
                Context.Out.WriteLine($"  {t.Name,-60} {t.DType.SafetensorsName(),-5} {t.Spec.ShapeText}");
            }
        }
        return new
        {
            path,
            kind,
            totalBytes = bytes,
            tensors = tensors.Select(t => new { name = t.Name, dtype = t.DType.SafetensorsName(), shape = t.Shape }),
        };
    }

    private object InspectAdapter(string path)
    {
        using var adapter = PeftAdapter.Load(path);
        Context.Warn(adapter.Warnings);
        var c = adapter.Config;
        if (!Context.Json)
        {
            Context.Out.WriteLine($"{path}: PEFT {c.PeftType} adapter, r={c.R}, alpha={c.Alpha}, rslora={c.UseRsLora}, dora={c.UseDora}, {adapter.Modules.Count} modules");
            foreach (var m in adapter.Modules)
            {
                Context.Out.WriteLine($"  {m.ModulePath,-50} {m.Kind,-13} [{m.OutFeatures} x {m.InFeatures}] r={m.Rank} alpha={m.Alpha} scaling={m.Scaling:G6}");
            }
            foreach (var e in adapter.ExtraTensors)
            {
                Context.Out.WriteLine($"  {e.Tensor.Name,-50} (saved whole) {e.Tensor.Spec.ShapeText}");
            }
        }
        return new
        {
            path,
            kind = "adapter",
            peftType = c.PeftType.ToString().ToUpperInvariant(),
            r = c.R,
            alpha = c.Alpha,
            useRslora = c.UseRsLora,
            useDora = c.UseDora,
            modules = adapter.Modules.Select(m => new
            {
                path = m.ModulePath,
                kind = m.Kind.ToString(),
                rank = m.Rank,
                alpha = m.Alpha,
                scaling = m.Scaling,
                outFeatures = m.OutFeatures,
                inFeatures = m.InFeatures,
            }),
            extraTensors = adapter.ExtraTensors.Select(e => e.Tensor.Name),
        };
    }

    private object InspectOnnxAdapter(string path)
    {
        var adapter = OnnxAdapterFile.Read(path);
        static string Shape(OnnxAdapterParameter p) => "[" + string.Join(", ", p.Shape) + "]";
        long bytes = adapter.Parameters.Sum(p => (long)p.Data.Length);
        if (!Context.Json)
        {
            Context.Out.WriteLine($"{path}: ONNX Runtime LoRA adapter, format {adapter.FormatVersion}, adapter version {adapter.AdapterVersion}, " +
                $"model version {adapter.ModelVersion}, {adapter.Parameters.Count} parameters, {bytes:N0} bytes");
            foreach (var p in adapter.Parameters)
            {
                Context.Out.WriteLine($"  {p.Name,-60} {p.DType.SafetensorsName(),-5} {Shape(p)}");
            }
        }
        return new
        {
            path,
            kind = "onnx_adapter",
            formatVersion = adapter.FormatVersion,
            adapterVersion = adapter.AdapterVersion,
            modelVersion = adapter.ModelVersion,
            totalBytes = bytes,
            parameters = adapter.Parameters.Select(p => new { name = p.Name, dtype = p.DType.SafetensorsName(), shape = p.Shape }),
        };
    }

    private object InspectOnnx(string path)
    {
        var model = OnnxFile.Load(path, new OnnxLoadOptions { LoadExternalData = false });
        var g = model.Graph;
        static string Shape(ValueInfoProto v) => v.Type?.TensorType?.Shape is { } s
            ? "[" + string.Join(", ", s.Dim.Select(d => d.HasDimParam ? d.DimParam : d.DimValue.ToString(System.Globalization.CultureInfo.InvariantCulture))) + "]"
            : "[?]";
        long weightBytes = g.Initializer.Sum(t => OnnxTensors.IsExternal(t)
            ? t.ExternalData.Where(e => e.Key == "length").Select(e => long.Parse(e.Value, System.Globalization.CultureInfo.InvariantCulture)).FirstOrDefault()
            : t.RawData.Length + (t.FloatData.Count * 4L));
        var opsets = model.OpsetImport.Select(o => $"{(o.Domain.Length == 0 ? "ai.onnx" : o.Domain)}:{o.Version}").ToList();
        var ops = g.Node.GroupBy(n => n.OpType).OrderByDescending(x => x.Count()).ThenBy(x => x.Key, StringComparer.Ordinal)
            .Select(x => new { op = x.Key, count = x.Count() }).ToList();
        if (!Context.Json)
        {
            Context.Out.WriteLine($"{path}: ONNX IR {model.IrVersion}, opset {string.Join(", ", opsets)}, producer '{model.ProducerName}'");
            Context.Out.WriteLine($"  {g.Node.Count} nodes, {g.Initializer.Count} initializers ({weightBytes:N0} bytes{(g.Initializer.Any(OnnxTensors.IsExternal) ? ", external data" : "")})");
            foreach (var i in g.Input)
            {
                Context.Out.WriteLine($"  input  {i.Name,-20} {OnnxTensors.DataTypeName(i.Type?.TensorType?.ElemType ?? 0),-8} {Shape(i)}");
            }
            foreach (var o in g.Output)
            {
                Context.Out.WriteLine($"  output {o.Name,-20} {OnnxTensors.DataTypeName(o.Type?.TensorType?.ElemType ?? 0),-8} {Shape(o)}");
            }
            Context.Out.WriteLine("  ops: " + string.Join(", ", ops.Select(o => $"{o.op}×{o.count}")));
            foreach (var m in model.MetadataProps)
            {
                Context.Out.WriteLine($"  metadata {m.Key} = {m.Value}");
            }
        }
        return new
        {
            path,
            kind = "onnx",
            irVersion = model.IrVersion,
            opsets,
            producer = model.ProducerName,
            nodes = g.Node.Count,
            initializers = g.Initializer.Count,
            weightBytes,
            inputs = g.Input.Select(i => new { name = i.Name, type = OnnxTensors.DataTypeName(i.Type?.TensorType?.ElemType ?? 0), shape = Shape(i) }),
            outputs = g.Output.Select(o => new { name = o.Name, type = OnnxTensors.DataTypeName(o.Type?.TensorType?.ElemType ?? 0), shape = Shape(o) }),
            ops,
            metadata = model.MetadataProps.ToDictionary(m => m.Key, m => m.Value),
        };
    }
}
