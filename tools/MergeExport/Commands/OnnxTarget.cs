using OnnxLora.Core;
using OnnxLora.Merge;
using OnnxLora.Merge.Onnx;
using OnnxLora.MergeExport.Internals;

namespace OnnxLora.MergeExport.Commands;

/// <summary>Merging into an existing ONNX model (made by another tool): only initializer data changes.</summary>
internal static class OnnxTarget
{
    public static int Merge(CliContext context, string model, IReadOnlyList<WeightedAdapter> adapters, string output, MergeOptions options, string? baseCheckpoint)
    {
        if (!output.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase))
        {
            throw OnnxLoraException.InvalidOption("--out", $"{output}: merging into an ONNX model writes an ONNX model; give a path ending in .onnx.");
        }
        var onnxOptions = OnnxMergeOptions.Default with { BaseCheckpoint = baseCheckpoint, Merge = options, Overwrite = options.Overwrite };
        using var outputLock = Core.IO.OutputLock.Acquire(output);
        var plan = OnnxModelMerger.Plan(model, adapters, onnxOptions);
        context.Warn(plan.Warnings);
        if (context.Verbose && !context.Json)
        {
            context.Out.WriteLine(plan.Describe());
        }
        var result = OnnxModelMerger.Merge(model, adapters, output, onnxOptions);
        if (context.Json)
        {
            var outputs = new Dictionary<string, string> { ["model"] = result.OutputPath };
            if (result.ExternalDataPath is { } data)
            {
                outputs["externalData"] = data;
            }
            context.Out.WriteLine(new CommandResult("merge", "passed")
            {
                Outputs = outputs,
                Details = { ["initializersMerged"] = result.InitializersMerged, ["initializersReplaced"] = result.InitializersReplaced },
            }.ToJson());
        }
        else
        {
            context.Info($"merged {result.InitializersMerged} initializers ({result.InitializersReplaced} replaced) into {result.OutputPath}");
        }
        return Cli.Success;
    }

    /// <summary>The adapter → initializer mapping, before anything is written (<c>inspect MODEL.onnx --adapter DIR</c>).</summary>
    public static object Inspect(CliContext context, string model, IReadOnlyList<string> adapterArgs, string? baseCheckpoint)
    {
        var adapters = AdapterArgument.LoadAll(adapterArgs);
        try
        {
            var plan = OnnxModelMerger.Plan(model, adapters, OnnxMergeOptions.Default with { BaseCheckpoint = baseCheckpoint });
            context.Warn(plan.Warnings);
            if (!context.Json)
            {
                context.Out.WriteLine(plan.Describe());
            }
            return System.Text.Json.JsonDocument.Parse(plan.ToJson()).RootElement.Clone();
        }
        finally
        {
            AdapterArgument.DisposeAll(adapters);
        }
    }

    /// <summary>The adapter → tensor mapping onto a safetensors checkpoint.</summary>
    public static object InspectCheckpoint(CliContext context, string checkpoint, IReadOnlyList<string> adapterArgs)
    {
        var adapters = AdapterArgument.LoadAll(adapterArgs);
        try
        {
            var plan = CheckpointMerger.Plan(checkpoint, adapters);
            context.Warn(plan.Warnings);
            string text = plan.Describe();
            if (!context.Json)
            {
                context.Out.WriteLine(text);
            }
            return new { path = checkpoint, kind = "merge-plan", plan = text };
        }
        finally
        {
            AdapterArgument.DisposeAll(adapters);
        }
    }
}
