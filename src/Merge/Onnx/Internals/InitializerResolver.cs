using Onnx;
using OnnxLora.Core;
using OnnxLora.Core.Onnx;
using OnnxLora.Core.Safetensors;

namespace OnnxLora.Merge.Onnx.Internals;

/// <summary>A parameter of the PyTorch model an adapter updates, to be found among the ONNX initializers.</summary>
/// <param name="Path">Module path ("model.layers.0.self_attn.q_proj").</param>
/// <param name="Suffix">Parameter name in the module ("weight", "bias").</param>
/// <param name="ParamShape">The parameter's shape as PyTorch stores it.</param>
/// <param name="ParamRows">What the parameter's rows are (out for nn.Linear / nn.Embedding, in for Conv1D).</param>
/// <param name="What">Names the request in messages ("adapter DIR: module 'x'").</param>
internal sealed record TargetRequest(string Path, string Suffix, IReadOnlyList<long> ParamShape, WeightRows ParamRows, string What)
{
    public string ParamName => Path + "." + Suffix;
}

/// <summary>Where a parameter lives in the model.</summary>
internal sealed record TargetResolution(string Initializer, DType DType, OnnxMatchKind Match, OnnxWeightLayout Layout, string Via);

/// <summary>
/// Finds the initializer holding a parameter: by name, then by torch.onnx node-name path, then (with
/// a base checkpoint) by contents; decides its layout from how the graph reads it, and checks the shape.
/// </summary>
internal sealed class InitializerResolver
{
    private readonly string _model;
    private readonly OnnxGraphIndex _graph;
    private readonly PrefixNameIndex _names;
    private readonly SafetensorsCheckpoint? _checkpoint;
    private readonly OnnxExternalDataFiles? _data;
    private readonly PrefixNameIndex? _checkpointNames;
    private readonly Dictionary<string, List<string>> _byShape = new(StringComparer.Ordinal);

    /// <param name="model">The model file (for messages).</param>
    /// <param name="graph">Its graph, loaded without external data.</param>
    /// <param name="checkpoint">The base checkpoint to match contents with, or null.</param>
    /// <param name="data">The model's external data (read one initializer at a time when matching contents), or null when it has none.</param>
    public InitializerResolver(string model, GraphProto graph, SafetensorsCheckpoint? checkpoint, OnnxExternalDataFiles? data)
    {
        _model = model;
        _data = data;
        _graph = new OnnxGraphIndex(graph);
        _names = new PrefixNameIndex(_graph.Initializers.Keys.Where(_graph.IsRead));
        _checkpoint = checkpoint;
        if (checkpoint is not null)
        {
            _checkpointNames = new PrefixNameIndex(checkpoint.Tensors.Select(t => t.Name));
            foreach (var t in graph.Initializer)
            {
                if (_graph.IsRead(t.Name) && OnnxTensors.TryFromOnnx(t.DataType, out var dt) && dt.IsFloat())
                {
                    string key = ShapeKey(t.Dims);
                    if (!_byShape.TryGetValue(key, out var list))
                    {
                        list = [];
                        _byShape.Add(key, list);
                    }
                    list.Add(t.Name);
                }
            }
        }
    }

    public TargetResolution Resolve(TargetRequest request)
    {
        var byName = _names.Find(request.ParamName);
        if (byName.Count > 1)
        {
            throw OnnxMergeThrow.Ambiguous(_model, request.What, "name", byName.Select(Quote));
        }
        if (byName.Count == 1)
        {
            return Finish(request, byName[0], OnnxMatchKind.Name, contentLayouts: null);
        }

        bool isBias = request.Suffix == "bias";
        if ((request.Suffix == "weight" && request.ParamShape.Count == 2) || (isBias && request.ParamShape.Count == 1))
        {
            var paths = _graph.NodePaths.Find(request.Path).ToHashSet(StringComparer.Ordinal);
            var uses = _graph.NodePathUses.Where(u => u.IsBias == isBias && paths.Contains(u.ModulePath)).ToList();
            var inits = uses.Select(u => u.Initializer).Distinct(StringComparer.Ordinal).ToList();
            if (inits.Count > 1)
            {
                throw OnnxMergeThrow.Ambiguous(_model, request.What, "node path",
                    inits.Select(i => $"'{i}' (read by {string.Join(", ", uses.Where(u => u.Initializer == i).Select(u => Quote(u.Node.Name)))})"));
            }
            if (inits.Count == 1)
            {
                return Finish(request, inits[0], OnnxMatchKind.NodePath, contentLayouts: null);
            }
        }

        string contentTried, advice;
        if (_checkpoint is null)
        {
            contentTried = "no base checkpoint was given to match by contents";
            advice = "Is the adapter for this model? If the model's weights are anonymous (onnx::MatMul_N), pass the base checkpoint it was exported from to match them by contents.";
        }
        else
        {
            var byContent = MatchContents(request, out string? baseTensor, out contentTried);
            if (byContent.Count > 1)
            {
                throw OnnxMergeThrow.Ambiguous(_model, request.What, $"contents (equal to checkpoint tensor '{baseTensor}')",
                    byContent.Select(m => $"'{m.Key}' [{string.Join(", ", _graph.Initializers[m.Key].Dims)}]"));
            }
            if (byContent.Count == 1)
            {
                var only = byContent.Single();
                return Finish(request, only.Key, OnnxMatchKind.Content, only.Value);
            }
            advice = baseTensor is null
                ? $"Is the adapter for this model, and {_checkpoint.Directory} the checkpoint {_model} was exported from?"
                : $"Check that {_checkpoint.Directory} is the checkpoint {_model} was exported from (the same weights: not fine-tuned, merged or quantized since) and that the adapter was trained on it.";
        }
        throw OnnxMergeThrow.Unmapped(_model, request.What,
            $"no initializer named '{request.ParamName}' (nor differing by one leading component), no MatMul/Gemm/Gather node named after the path (torch.onnx style '{OnnxGraphIndex.NodeNameOf(request.Path, "MatMul")}'), and {contentTried}",
            Candidates(request), advice);
    }

    /// <summary>
    /// Initializers whose contents equal the checkpoint's tensor, each with the layouts it matches in.
    /// <paramref name="baseTensor"/> is the checkpoint tensor compared (null when there is none, or several);
    /// <paramref name="tried"/> says, for a message, why nothing matched.
    /// </summary>
    private Dictionary<string, List<OnnxWeightLayout>> MatchContents(TargetRequest request, out string? baseTensor, out string tried)
    {
        var result = new Dictionary<string, List<OnnxWeightLayout>>(StringComparer.Ordinal);
        var found = _checkpointNames!.Find(request.ParamName);
        baseTensor = null;
        if (found.Count != 1)
        {
            tried = found.Count == 0
                ? $"the base checkpoint {_checkpoint!.Directory} has no tensor '{request.ParamName}' to match contents with"
                : $"the base checkpoint {_checkpoint!.Directory} has several tensors for '{request.ParamName}' ({OnnxMergeThrow.List(found.Select(Quote))})";
            return result;
        }
        string name = found[0];
        var (file, info) = _checkpoint!.Locate(name);
        if (!info.Shape.SequenceEqual(request.ParamShape))
        {
            throw OnnxMergeThrow.Invalid(_checkpoint.Directory, $"tensor '{name}' (for {request.What})", info.Spec.ShapeText, $"[{string.Join(", ", request.ParamShape)}] as the adapter expects");
        }
        if (!info.DType.IsFloat())
        {
            throw OnnxMergeThrow.Invalid(_checkpoint.Directory, $"tensor '{name}' (for {request.What}) dtype", info.DType.ToString(), "a floating-point dtype");
        }
        baseTensor = name;
        tried = $"no initializer has the contents of its base weight '{name}' {info.Spec.ShapeText} in the base checkpoint {_checkpoint.Directory} (compared as stored{(info.Shape.Count == 2 ? " and transposed" : "")})";
        var reference = file.ReadSingles(info);
        long rows = info.Shape[0], cols = info.Shape.Count == 2 ? info.Shape[1] : 1;
        bool[] orientations = info.Shape.Count == 2 ? [false, true] : [false];
        foreach (bool transposed in orientations)
        {
            IReadOnlyList<long> shape = transposed ? [cols, rows] : info.Shape;
            if (!_byShape.TryGetValue(ShapeKey(shape), out var candidates))
            {
                continue;
            }
            foreach (string c in candidates)
            {
                var t = _graph.Initializers[c];
                OnnxTensors.TryFromOnnx(t.DataType, out var dt);
                if (ContentComparer.Matches(t, dt, _data, reference, info.DType, rows, cols, transposed))
                {
                    if (!result.TryGetValue(c, out var layouts))
                    {
                        layouts = [];
                        result.Add(c, layouts);
                    }
                    layouts.Add(transposed ? OnnxWeightLayout.Transposed : OnnxWeightLayout.AsIs);
                }
            }
        }
        return result;
    }

    private TargetResolution Finish(TargetRequest request, string initializer, OnnxMatchKind match, List<OnnxWeightLayout>? contentLayouts)
    {
        var tensor = _graph.Initializers[initializer];
        string what = $"initializer '{initializer}' (for {request.What}, matched by {OnnxMergePlan.MatchName(match)})";
        if (!OnnxTensors.TryFromOnnx(tensor.DataType, out var dtype) || !dtype.IsFloat())
        {
            throw OnnxMergeThrow.Invalid(_model, $"{what} data_type", OnnxTensors.DataTypeName(tensor.DataType), "FLOAT, FLOAT16, BFLOAT16 or DOUBLE to merge into");
        }
        var dims = tensor.Dims.ToArray();
        var param = request.ParamShape;
        if (param.Count != 2)
        {
            if (!dims.SequenceEqual(param))
            {
                throw OnnxMergeThrow.Invalid(_model, what, $"shape [{string.Join(", ", dims)}]", $"[{string.Join(", ", param)}]");
            }
            return new TargetResolution(initializer, dtype, match, OnnxWeightLayout.AsIs, "");
        }

        var uses = _graph.WeightUses(initializer);
        string via = string.Join("; ", uses.Select(u => u.Via).Distinct(StringComparer.Ordinal));
        var rows = uses.Select(u => u.Rows).Distinct().ToList();
        if (rows.Count > 1 && contentLayouts is not { Count: 1 })
        {
            throw OnnxMergeThrow.Invalid(_model, $"{what} is read both as [out, in] and as [in, out] ({via}); expected one layout.");
        }
        OnnxWeightLayout? fromGraph = rows.Count == 1 ? (rows[0] == request.ParamRows ? OnnxWeightLayout.AsIs : OnnxWeightLayout.Transposed) : null;
        bool fitsAsIs = dims.SequenceEqual(param);
        bool fitsTransposed = dims.Length == 2 && dims[0] == param[1] && dims[1] == param[0];
        OnnxWeightLayout layout;
        if (contentLayouts is { Count: 1 })
        {
            layout = contentLayouts[0];
        }
        else if (fromGraph is { } g)
        {
            layout = g;
        }
        else
        {
            // No recognized reader: the shape decides; a square weight found by name is taken as the parameter itself.
            layout = !fitsAsIs && fitsTransposed ? OnnxWeightLayout.Transposed : OnnxWeightLayout.AsIs;
        }
        if (layout == OnnxWeightLayout.AsIs ? !fitsAsIs : !fitsTransposed)
        {
            string expected = layout == OnnxWeightLayout.AsIs
                ? $"[{param[0]}, {param[1]}] (the parameter as stored{(via.Length > 0 ? ", as " + via + " reads it" : "")})"
                : $"[{param[1]}, {param[0]}] (the parameter transposed, as {via} reads it)";
            throw OnnxMergeThrow.Invalid(_model, what, $"shape [{string.Join(", ", dims)}]", expected);
        }
        return new TargetResolution(initializer, dtype, match, layout, via);
    }

    private IEnumerable<string> Candidates(TargetRequest request)
    {
        string last = request.Path[(request.Path.LastIndexOf('.') + 1)..];
        var similar = _graph.Initializers.Keys.Where(n => n.Contains(last, StringComparison.Ordinal)).Select(Quote);
        var nodes = _graph.NodePathUses.Where(u => u.ModulePath.Contains(last, StringComparison.Ordinal)).Select(u => $"'{u.Initializer}' (read by '{u.Node.Name}')");
        var p = request.ParamShape;
        var sameShape = _graph.Initializers.Values
            .Where(t => t.Dims.SequenceEqual(p) || (p.Count == 2 && t.Dims.Count == 2 && t.Dims[0] == p[1] && t.Dims[1] == p[0]))
            .Select(t => $"'{t.Name}' [{string.Join(", ", t.Dims)}]");
        return similar.Concat(nodes).Concat(sameShape);
    }

    private static string Quote(string s) => $"'{s}'";

    private static string ShapeKey(IEnumerable<long> dims) => string.Join(",", dims);
}
