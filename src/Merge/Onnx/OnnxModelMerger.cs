using Onnx;
using OnnxLora.Core;
using OnnxLora.Core.Onnx;
using OnnxLora.Core.Peft;
using OnnxLora.Core.Safetensors;
using OnnxLora.Merge.Internals;
using OnnxLora.Merge.Onnx.Internals;

namespace OnnxLora.Merge.Onnx;

/// <summary>What a merge into an ONNX model wrote.</summary>
/// <param name="OutputPath">The merged model.</param>
/// <param name="ExternalDataPath">Its data file, or null when all data is inside the model file.</param>
/// <param name="InitializersMerged">Initializers changed by adapter modules.</param>
/// <param name="InitializersReplaced">Initializers replaced by tensors saved with an adapter.</param>
/// <param name="Plan">The plan that was carried out.</param>
public sealed record OnnxMergeResult(string OutputPath, string? ExternalDataPath, int InitializersMerged, int InitializersReplaced, OnnxMergePlan Plan);

/// <summary>
/// Merges PEFT adapters into an ONNX model exported elsewhere (torch.onnx, Optimum): each adapter
/// module is mapped to the initializer holding its weight — by name, by torch.onnx node-name path, or
/// (with the base checkpoint) by contents — and that initializer's data is replaced by the merged
/// weight in its own layout and dtype (ΔW formed and added in fp32, cast once). Nothing else of the
/// model changes: nodes, inputs, outputs, names, other initializers. The output is written atomically.
/// </summary>
/// <remarks>The model, external data included, is held in memory while it is merged.</remarks>
public static class OnnxModelMerger
{
    /// <summary>Maps every adapter module to its initializer without writing anything (the "inspect" view).</summary>
    /// <exception cref="OnnxLoraException">Bad input: a module maps to no initializer or to several (the message lists candidates), or a shape or dtype does not fit.</exception>
    public static OnnxMergePlan Plan(string onnxPath, IReadOnlyList<WeightedAdapter> adapters, OnnxMergeOptions? options = null)
    {
        options ??= OnnxMergeOptions.Default;
        string model = Path.GetFullPath(onnxPath);
        var proto = Load(model, needData: options.BaseCheckpoint is not null, out _);
        return CreatePlan(model, proto.Graph, adapters, options);
    }

    /// <summary>
    /// Merges <paramref name="adapters"/> into the model at <paramref name="onnxPath"/> and writes
    /// <paramref name="outputPath"/> (and "&lt;output&gt;.data" when data goes external).
    /// </summary>
    /// <exception cref="OnnxLoraException">Bad input: mapping failed, the model is malformed, (safe mode) a merged value is not
    /// finite in the initializer's dtype, the output exists and overwrite is off, or bad options (output equal to the input, an
    /// output dtype other than the model's).</exception>
    public static OnnxMergeResult Merge(string onnxPath, IReadOnlyList<WeightedAdapter> adapters, string outputPath, OnnxMergeOptions? options = null)
    {
        options ??= OnnxMergeOptions.Default;
        string model = Path.GetFullPath(onnxPath);
        string output = Path.GetFullPath(outputPath);
        bool overwrite = options.Overwrite || options.Merge.Overwrite;
        if (string.Equals(model, output, StringComparison.Ordinal))
        {
            throw OnnxMergeThrow.Option(nameof(outputPath), $"{output} is the input model itself; write the merge to another file");
        }
        if (!overwrite && (File.Exists(output) || Directory.Exists(output)))
        {
            throw OnnxLoraException.OutputExists(output);
        }

        var proto = Load(model, needData: true, out long? smallestExternal);
        var graph = proto.Graph;
        var plan = CreatePlan(model, graph, adapters, options);
        int merged = 0, replaced = 0;
        for (int i = 0; i < graph.Initializer.Count; i++)
        {
            var tensor = graph.Initializer[i];
            if (!plan.Touches(tensor.Name))
            {
                continue;
            }
            var (key, layout) = plan.TargetOf(tensor.Name);
            graph.Initializer[i] = MergeInitializer(model, plan.Merge, key, layout, tensor);
            merged += plan.Merge.EntriesFor(key).Count > 0 || plan.Merge.BiasEntriesFor(key).Count > 0 ? 1 : 0;
            replaced += plan.Merge.ReplacementFor(key) is not null ? 1 : 0;
        }

        // As the input had it: every tensor at least as large as the smallest one the input kept outside goes outside again.
        var external = options.ExternalData ?? (smallestExternal is not null ? OnnxExternalData.Always : OnnxExternalData.Auto);
        var save = new OnnxSaveOptions { ExternalData = external, Overwrite = overwrite };
        if (smallestExternal is { } threshold && external == OnnxExternalData.Always)
        {
            save = save with { ExternalThresholdBytes = Math.Min(threshold, save.ExternalThresholdBytes) };
        }
        OnnxFile.Save(proto, output, save);
        string dataPath = Path.Combine(Path.GetDirectoryName(output)!, OnnxFile.ExternalDataFileName(output));
        bool wroteData = external != OnnxExternalData.Never && File.Exists(dataPath) && ReferencesData(output);
        return new OnnxMergeResult(output, wroteData ? dataPath : null, merged, replaced, plan);
    }

    /// <summary>True when the written model keeps data externally (read without loading that data).</summary>
    private static bool ReferencesData(string output)
    {
        var written = OnnxFile.Load(output, new OnnxLoadOptions { LoadExternalData = false, ValidateGraph = false });
        return written.Graph.Initializer.Any(OnnxTensors.IsExternal);
    }

    /// <summary>Reads the model; external data only when it is needed (merging, content matching).</summary>
    /// <param name="path">The model.</param>
    /// <param name="needData">Load external data too.</param>
    /// <param name="smallestExternal">Byte size of the smallest initializer kept in external data, or null when none is.</param>
    private static ModelProto Load(string path, bool needData, out long? smallestExternal)
    {
        var model = OnnxFile.Load(path, new OnnxLoadOptions { LoadExternalData = false });
        var external = model.Graph.Initializer.Where(OnnxTensors.IsExternal).ToList();
        smallestExternal = external.Count == 0 ? null : external.Min(t => OnnxTensors.TryFromOnnx(t.DataType, out var dt) ? OnnxTensors.ElementCount(t) * dt.SizeOf() : long.MaxValue);
        return needData && external.Count > 0 ? OnnxFile.Load(path) : model;
    }

    private static OnnxMergePlan CreatePlan(string model, GraphProto graph, IReadOnlyList<WeightedAdapter> adapters, OnnxMergeOptions options)
    {
        ArgumentNullException.ThrowIfNull(adapters);
        if (adapters.Count == 0)
        {
            throw OnnxMergeThrow.Option(nameof(adapters), "expected at least one adapter");
        }
        SafetensorsCheckpoint? checkpoint = null;
        if (options.BaseCheckpoint is { } dir)
        {
            if (!Directory.Exists(dir))
            {
                throw OnnxLoraException.NotFound("base checkpoint folder", Path.GetFullPath(dir));
            }
            checkpoint = SafetensorsCheckpoint.Open(dir);
        }
        try
        {
            return CreatePlan(model, graph, adapters, options, new InitializerResolver(model, graph, checkpoint));
        }
        finally
        {
            checkpoint?.Dispose();
        }
    }

    private static OnnxMergePlan CreatePlan(string model, GraphProto graph, IReadOnlyList<WeightedAdapter> adapters, OnnxMergeOptions options, InitializerResolver resolver)
    {
        var resolved = new Dictionary<string, TargetResolution>(StringComparer.Ordinal);
        var specs = new Dictionary<string, TensorSpec>(StringComparer.Ordinal);
        var owners = new Dictionary<string, (string Key, string What)>(StringComparer.Ordinal);
        var entries = new List<OnnxMergeEntry>();

        TargetResolution Target(TargetRequest request)
        {
            string key = request.ParamName;
            if (!resolved.TryGetValue(key, out var r))
            {
                r = resolver.Resolve(request);
                resolved.Add(key, r);
                specs.Add(key, new TensorSpec(key, r.DType, request.ParamShape));
                if (owners.TryGetValue(r.Initializer, out var owner))
                {
                    throw OnnxMergeThrow.SharedInitializer(model, r.Initializer, owner.What, request.What);
                }
                owners.Add(r.Initializer, (key, request.What));
            }
            return r;
        }

        // fan_in_fan_out follows the layer type where the model family tells it (config.json beside the model or in the
        // base checkpoint); MergePlan.Create below decides the same way and warns where that overrides the config.
        string? modelType = LayerLayout.ModelTypeIn(Path.GetDirectoryName(model)) ?? LayerLayout.ModelTypeIn(options.BaseCheckpoint);
        for (int i = 0; i < adapters.Count; i++)
        {
            var adapter = adapters[i].Adapter;
            foreach (var module in adapter.Modules)
            {
                var m = LayerLayout.Decide(adapter, module, module.WeightName, null, modelType, []);
                var rows = m.FanInFanOut && m.Kind != AdapterModuleKind.LoraEmbedding ? WeightRows.In : WeightRows.Out;
                var r = Target(new TargetRequest(m.ModulePath, "weight", m.WeightShape, rows, $"adapter {adapter.Directory}: module '{m.ModulePath}'"));
                entries.Add(Entry(i, m.ModulePath, UpdateText(m), r, graph));
                if (m.HasLoraBias)
                {
                    var rb = Target(new TargetRequest(m.ModulePath, "bias", [m.OutFeatures], WeightRows.Out, $"adapter {adapter.Directory}: lora_B bias of module '{m.ModulePath}'"));
                    entries.Add(Entry(i, m.BiasName, $"add lora_B bias s={m.Scaling.ToString("G6", System.Globalization.CultureInfo.InvariantCulture)}", rb, graph));
                }
            }
            foreach (var x in adapter.ExtraTensors)
            {
                int dot = x.TargetName.LastIndexOf('.');
                string path = dot > 0 ? x.TargetName[..dot] : x.TargetName;
                string suffix = dot > 0 ? x.TargetName[(dot + 1)..] : "";
                var r = Target(new TargetRequest(path, suffix, x.Tensor.Shape, WeightRows.Out, $"adapter {adapter.Directory}: saved tensor '{x.Key}'"));
                entries.Add(Entry(i, x.TargetName, $"replace ({x.Kind})", r, graph));
            }
        }

        CheckOutputDType(options.Merge.OutputDType, resolved);
        // Names are the adapters' own parameter names, so the plan maps each module exactly; shapes are the parameters'.
        var merge = MergePlan.Create(adapters, specs, model, options.Merge, modelType);
        var byInitializer = owners.ToDictionary(o => o.Key, o => (o.Value.Key, resolved[o.Value.Key].Layout), StringComparer.Ordinal);
        return new OnnxMergePlan(model, merge, entries, byInitializer);
    }

    private static OnnxMergeEntry Entry(int adapterIndex, string path, string update, TargetResolution r, GraphProto graph)
    {
        var dims = graph.Initializer.First(t => t.Name == r.Initializer).Dims.ToArray();
        return new OnnxMergeEntry(adapterIndex, path, update, r.Initializer, r.Match, r.Layout, r.DType, dims, r.Via);
    }

    private static string UpdateText(AdapterModule m)
    {
        string kind = m.Kind switch
        {
            AdapterModuleKind.Lora => "lora",
            AdapterModuleKind.LoraEmbedding => "lora-embedding",
            AdapterModuleKind.LoHa => "loha",
            _ => "lokr",
        };
        return FormattableString.Invariant($"{kind}{(m.UseDora ? "+dora" : "")} r={m.Rank} s={m.Scaling:G6}{(m.FanInFanOut ? " fan_in_fan_out" : "")}");
    }

    private static void CheckOutputDType(DType? output, Dictionary<string, TargetResolution> resolved)
    {
        if (output is not DType wanted)
        {
            return;
        }
        var other = resolved.Values.FirstOrDefault(r => r.DType != wanted);
        if (other is not null)
        {
            throw OnnxMergeThrow.Option(nameof(MergeOptions.OutputDType),
                $"found {output}, but initializer '{other.Initializer}' is {other.DType}; an ONNX merge keeps each initializer's dtype so the graph stays valid, expected keep");
        }
    }

    private static TensorProto MergeInitializer(string model, MergePlan plan, string key, OnnxWeightLayout layout, TensorProto tensor)
    {
        OnnxTensors.TryFromOnnx(tensor.DataType, out var dtype);
        var values = OnnxTensors.ReadAsSingle(tensor);
        var dims = tensor.Dims.ToArray();
        bool transposed = layout == OnnxWeightLayout.Transposed;
        // The plan works on the parameter's layout; a transposed initializer [a, b] holds the parameter [b, a].
        var param = transposed ? DeltaMath.Transpose(values, (int)dims[0], (int)dims[1]) : values;
        plan.ApplyTo(key, param);
        var merged = transposed ? DeltaMath.Transpose(param, (int)dims[1], (int)dims[0]) : param;
        byte[] bytes = new byte[checked(merged.Length * dtype.SizeOf())];
        long overflow = FloatCodec.Encode(dtype, merged, bytes);
        if (plan.Options.SafeMode && overflow >= 0)
        {
            throw OnnxMergeThrow.NonFinite(model, tensor.Name, overflow, merged[overflow], $"overflowing {dtype} after merging");
        }
        var result = OnnxTensors.CreateWrapped(tensor.Name, dtype, dims, bytes);
        result.DocString = tensor.DocString;
        result.MetadataProps.Add(tensor.MetadataProps);
        return result;
    }
}
