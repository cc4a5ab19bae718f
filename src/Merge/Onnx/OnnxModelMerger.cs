using System.Buffers;
using System.Globalization;
using Google.Protobuf;
using Onnx;
using OnnxLora.Core;
using OnnxLora.Core.IO;
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
/// <remarks>A model with external data is merged streaming, a tensor at a time (see <see cref="Merge"/>).</remarks>
public static class OnnxModelMerger
{
    /// <summary>Maps every adapter module to its initializer without writing anything (the "inspect" view).</summary>
    /// <exception cref="OnnxLoraException">Bad input: a module maps to no initializer or to several (the message lists candidates), or a shape or dtype does not fit.</exception>
    public static OnnxMergePlan Plan(string onnxPath, IReadOnlyList<WeightedAdapter> adapters, OnnxMergeOptions? options = null)
    {
        options ??= OnnxMergeOptions.Default;
        string model = Path.GetFullPath(onnxPath);
        var proto = OnnxFile.Load(model, new OnnxLoadOptions { LoadExternalData = false });
        using var data = OpenExternalData(model, proto);
        return CreatePlan(model, proto.Graph, adapters, options, data);
    }

    /// <summary>
    /// Merges <paramref name="adapters"/> into the model at <paramref name="onnxPath"/> and writes
    /// <paramref name="outputPath"/> (and "&lt;output&gt;.data" when data goes external).
    /// </summary>
    /// <remarks>
    /// A model that keeps its weights in external data is merged streaming: its graph is read without the data, the
    /// output data file has the input's layout (same offsets; several input data files are laid one after another),
    /// unchanged tensors are copied file to file by the kernel (<see cref="FileRange"/>) and each merged tensor is read,
    /// merged and written at its place (one written while the next is merged), so memory stays near twice the largest
    /// merged tensor in fp32 whatever the model's size, and tensors over 2 GiB merge. A model without external data (under 2 GiB) is merged in memory.
    /// </remarks>
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

        var proto = OnnxFile.Load(model, new OnnxLoadOptions { LoadExternalData = false });
        using var data = OpenExternalData(model, proto);
        var plan = CreatePlan(model, proto.Graph, adapters, options, data);
        if (data is not null && Streams(options.ExternalData, data))
        {
            return MergeStreamed(proto, data, plan, output, overwrite);
        }

        // In memory: a model without external data, or one whose data is to be embedded (Never, or Auto when it fits under 2 GiB).
        if (data is not null)
        {
            proto = OnnxFile.Load(model);
        }
        var graph = proto.Graph;
        int merged = 0, replaced = 0;
        for (int i = 0; i < graph.Initializer.Count; i++)
        {
            var tensor = graph.Initializer[i];
            if (plan.Touches(tensor.Name))
            {
                graph.Initializer[i] = MergeInitializer(plan, tensor);
                Count(plan, tensor.Name, ref merged, ref replaced);
            }
        }
        var external = options.ExternalData ?? OnnxExternalData.Auto;
        OnnxFile.Save(proto, output, new OnnxSaveOptions { ExternalData = external, Overwrite = overwrite });
        string dataPath = Path.Combine(Path.GetDirectoryName(output)!, OnnxFile.ExternalDataFileName(output));
        bool wroteData = external != OnnxExternalData.Never && File.Exists(dataPath) && ReferencesData(output);
        return new OnnxMergeResult(output, wroteData ? dataPath : null, merged, replaced, plan);
    }

    /// <summary>
    /// The streaming merge: the output data file "&lt;output&gt;.data" gets every external tensor at the input's offset (plus
    /// the base of its input file when there are several), untouched ranges copied by the kernel, merged tensors written in
    /// place; the model file keeps everything else and points at the new data file. Both files appear only when complete
    /// (data file first), as <see cref="OnnxFile.Save"/> writes them.
    /// </summary>
    /// <summary>Writes waiting while the next tensor is computed, and the size of each encoded chunk written behind.</summary>
    private const int WritesInFlight = 3, WriteChunkBytes = 4 << 20;

    private static OnnxMergeResult MergeStreamed(ModelProto proto, OnnxExternalDataFiles data, OnnxMergePlan plan, string output, bool overwrite)
    {
        string location = OnnxFile.ExternalDataFileName(output);
        string dataPath = Path.Combine(Path.GetDirectoryName(output)!, location);
        var bases = new Dictionary<string, long>(StringComparer.Ordinal);
        long end = 0;
        foreach (var file in data.Ranges.GroupBy(r => r.Location, StringComparer.Ordinal))
        {
            long start = (end + OnnxFile.ExternalDataAlignment - 1) / OnnxFile.ExternalDataAlignment * OnnxFile.ExternalDataAlignment;
            bases.Add(file.Key, start);
            end = start + file.Max(r => r.Offset + r.Length);
        }
        DiskSpace.EnsureAvailable(output, end + proto.CalculateSize(), "the merged ONNX model");

        var graph = proto.Graph;
        var initializers = graph.Initializer.ToHashSet(ReferenceEqualityComparer.Instance);
        int merged = 0, replaced = 0;
        using var dataFile = AtomicFile.Create(dataPath, overwrite);
        using var modelFile = AtomicFile.Create(output, overwrite);
        // Writes (kernel copies included) run behind on their own thread: the next tensor is read and merged meanwhile.
        using (var behind = new WriteBehind(WritesInFlight, WriteChunkBytes))
        {
            WriteRanges(plan, data, bases, location, initializers, dataFile, behind, ref merged, ref replaced);
            behind.Complete();
        }
        dataFile.Stream.SetLength(end);
        for (int i = 0; i < graph.Initializer.Count; i++)
        {
            var tensor = graph.Initializer[i];
            if (!OnnxTensors.IsExternal(tensor) && plan.Touches(tensor.Name))
            {
                graph.Initializer[i] = MergeInitializer(plan, tensor);
                Count(plan, tensor.Name, ref merged, ref replaced);
            }
        }
        proto.WriteTo(modelFile.Stream);
        dataFile.Commit();
        modelFile.Commit();
        return new OnnxMergeResult(output, dataPath, merged, replaced, plan);
    }

    /// <summary>
    /// Whether a model with external data is merged streaming: always, unless its data is to be embedded — Never, or
    /// Auto (which embeds what fits under protobuf's 2 GiB limit, with the margin <see cref="OnnxFile.Save"/> leaves).
    /// </summary>
    /// <summary>Each external range to its place in the output data file: merged tensors re-encoded, the others copied by the kernel.</summary>
    private static void WriteRanges(OnnxMergePlan plan, OnnxExternalDataFiles data, Dictionary<string, long> bases, string location, HashSet<object?> initializers,
        AtomicFile target, WriteBehind behind, ref int merged, ref int replaced)
    {
        var handle = target.Stream.SafeFileHandle;
        for (int i = 0; i < data.Ranges.Count; i++)
        {
            var range = data.Ranges[i];
            if (i + 1 < data.Ranges.Count)
            {
                // The next range's bytes come from the disk while this one is merged (a model larger than the page cache).
                data.StartPrefetch(data.Ranges[i + 1]);
            }
            var tensor = range.Tensor;
            long offset = bases[range.Location] + range.Offset;
            if (initializers.Contains(tensor) && plan.Touches(tensor.Name))
            {
                // The merged tensor is handed whole to the writer thread, as the checkpoint merge does: row by row through the
                // cache when its merge is formed that way (LoRA updates), else in one fp32 copy.
                OnnxTensors.TryFromOnnx(tensor.DataType, out var dtype);
                WriteBehind.PieceWriter write = (at, bytes) =>
                {
                    RandomAccess.Write(handle, bytes, offset + at);
                    target.NoteWritten(bytes.Length);
                };
                var (key, layout) = plan.TargetOf(tensor.Name);
                // Safe mode: a finite value refused overflowed the encoding; a NaN/Inf one (row path only) came out of the merge.
                Func<long, float, Exception>? refuse = plan.Merge.Options.SafeMode
                    ? (index, value) => float.IsFinite(value)
                        ? OnnxMergeThrow.NonFinite(plan.ModelPath, tensor.Name, index, value, $"overflowing {dtype} after merging")
                        : plan.Merge.NonFiniteAfterMerging(key, index, value)
                    : null;
                var rows = plan.Merge.RowUpdateFor(key, transposed: layout == OnnxWeightLayout.Transposed);
                if (TensorBytes.FitsRowMerge(rows, data.ElementCount(range), dtype))
                {
                    TensorBytes.MergeRowsBehind(data.HandleOf(range), range.Offset, dtype, dtype, rows, behind, write, refuse);
                }
                else
                {
                    TensorBytes.EncodeWholeBehind(dtype, (int)data.ElementCount(range), behind,
                        values =>
                        {
                            data.ReadAsSingle(range, values);
                            Merged(plan, tensor, values);
                        },
                        write,
                        refuse);
                }
                Count(plan, tensor.Name, ref merged, ref replaced);
            }
            else
            {
                var source = data.HandleOf(range);
                long from = range.Offset, length = range.Length;
                behind.Enqueue(() =>
                {
                    FileRange.Copy(source, from, handle, offset, length);
                    target.NoteWritten(length);
                });
            }
            tensor.ExternalData.Clear();
            tensor.ExternalData.Add(new StringStringEntryProto { Key = "location", Value = location });
            tensor.ExternalData.Add(new StringStringEntryProto { Key = "offset", Value = offset.ToString(CultureInfo.InvariantCulture) });
            tensor.ExternalData.Add(new StringStringEntryProto { Key = "length", Value = range.Length.ToString(CultureInfo.InvariantCulture) });
        }
    }

    private static bool Streams(OnnxExternalData? wanted, OnnxExternalDataFiles data) => wanted switch
    {
        OnnxExternalData.Never => false,
        OnnxExternalData.Auto => data.Ranges.Sum(r => r.Length) > OnnxFile.MaxProtobufBytes - (256L << 20),
        _ => true,
    };

    private static void Count(OnnxMergePlan plan, string initializer, ref int merged, ref int replaced)
    {
        string key = plan.TargetOf(initializer).Key;
        merged += plan.Merge.EntriesFor(key).Count > 0 || plan.Merge.BiasEntriesFor(key).Count > 0 ? 1 : 0;
        replaced += plan.Merge.ReplacementFor(key) is not null ? 1 : 0;
    }

    /// <summary>True when the written model keeps data externally (read without loading that data).</summary>
    private static bool ReferencesData(string output)
    {
        var written = OnnxFile.Load(output, new OnnxLoadOptions { LoadExternalData = false, ValidateGraph = false });
        return written.Graph.Initializer.Any(OnnxTensors.IsExternal);
    }

    /// <summary>The model's external data, opened for reading tensor by tensor; null when it keeps all data inside.</summary>
    private static OnnxExternalDataFiles? OpenExternalData(string model, ModelProto proto) =>
        proto.Graph.Initializer.Any(OnnxTensors.IsExternal) ? OnnxExternalDataFiles.Open(model, proto) : null;

    private static OnnxMergePlan CreatePlan(string model, GraphProto graph, IReadOnlyList<WeightedAdapter> adapters, OnnxMergeOptions options, OnnxExternalDataFiles? data)
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
            return CreatePlan(model, graph, adapters, options, new InitializerResolver(model, graph, checkpoint, data));
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

    /// <summary>
    /// Merges an initializer's values in place, in its own layout: a transposed initializer [a, b] holds the parameter
    /// [b, a], which the plan merges from transposed factors (<see cref="MergePlan.ApplyTo"/>).
    /// </summary>
    private static ReadOnlySpan<float> Merged(OnnxMergePlan plan, TensorProto tensor, Span<float> values)
    {
        var (key, layout) = plan.TargetOf(tensor.Name);
        plan.Merge.ApplyTo(key, values, transposed: layout == OnnxWeightLayout.Transposed);
        return values;
    }

    private static TensorProto MergeInitializer(OnnxMergePlan plan, TensorProto tensor)
    {
        OnnxTensors.TryFromOnnx(tensor.DataType, out var dtype);
        var merged = Merged(plan, tensor, OnnxTensors.ReadAsSingle(tensor));
        byte[] bytes = new byte[checked(merged.Length * dtype.SizeOf())];
        long overflow = FloatCodec.Encode(dtype, merged, bytes);
        if (plan.Merge.Options.SafeMode && overflow >= 0)
        {
            throw OnnxMergeThrow.NonFinite(plan.ModelPath, tensor.Name, overflow, merged[(int)overflow], $"overflowing {dtype} after merging");
        }
        var result = OnnxTensors.CreateWrapped(tensor.Name, dtype, tensor.Dims.ToArray(), bytes);
        result.DocString = tensor.DocString;
        result.MetadataProps.Add(tensor.MetadataProps);
        return result;
    }
}
