using System.Globalization;
using OnnxLora.Core;

namespace OnnxLora.Validate.Internals;

/// <summary>
/// Makes the one set of inputs every model is fed: generated from the graphs' declared inputs (seeded), or read from
/// the user's .json/.npy files and checked against the declarations.
/// </summary>
internal static class InputBuilder
{
    public const string InputIds = "input_ids";
    public const string AttentionMask = "attention_mask";
    public const string PositionIds = "position_ids";
    public const string TokenTypeIds = "token_type_ids";

    /// <summary>
    /// The inputs declared by the models, by name; models that declare the same name must agree on element type and
    /// rank. Returns the first declaring model of each input too.
    /// </summary>
    public static Dictionary<string, (TensorSignature Signature, string Model)> Declared(IEnumerable<(string Model, IReadOnlyList<TensorSignature> Inputs)> models)
    {
        var declared = new Dictionary<string, (TensorSignature, string)>(StringComparer.Ordinal);
        foreach (var (model, inputs) in models)
        {
            foreach (var input in inputs)
            {
                if (!declared.TryGetValue(input.Name, out var first))
                {
                    declared[input.Name] = (input, model);
                    continue;
                }
                var (sig, firstModel) = first;
                if (sig.ElementType != input.ElementType || sig.Dims.Count != input.Dims.Count)
                {
                    throw ValidateThrow.Invalid(model, $"input {input.Name}", Describe(input),
                        $"{Describe(sig)} as declared by {firstModel} (every model is fed the same inputs)");
                }
            }
        }
        return declared;
    }

    public static string Describe(TensorSignature s) => $"{s.ElementType.ReportName()} [{string.Join(", ", s.Dims)}]";

    /// <summary>Generates every declared input.</summary>
    public static List<InputTensor> Generate(
        IReadOnlyDictionary<string, (TensorSignature Signature, string Model)> declared, ValidationOptions options, Func<long> vocab)
    {
        var shapes = new Dictionary<string, long[]>(StringComparer.Ordinal);
        foreach (var (name, (sig, model)) in declared)
        {
            shapes[name] = ResolveShape(sig, model, options);
        }

        long[]? mask = null;
        if (declared.ContainsKey(AttentionMask))
        {
            var shape = shapes[AttentionMask];
            mask = MakeMask(shape, options.Padding, declared[AttentionMask].Model);
        }

        var rng = new Random(options.Seed);
        var result = new List<InputTensor>();
        foreach (var (name, (sig, model)) in declared.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            long[] shape = shapes[name];
            long count = Count(shape, model, name);
            var kind = sig.ElementType;
            bool integer = kind is DType.I64 or DType.I32;
            long[]? ints = null;
            string source;
            if (integer && (name == InputIds || name.EndsWith("." + InputIds, StringComparison.Ordinal) || name.EndsWith("/" + InputIds, StringComparison.Ordinal)))
            {
                long v = vocab();
                ints = new long[count];
                for (long i = 0; i < count; i++)
                {
                    ints[i] = rng.NextInt64(v);
                }
                if (mask is not null && mask.Length == count)
                {
                    for (long i = 0; i < count; i++)
                    {
                        if (mask[i] == 0)
                        {
                            ints[i] = options.PadTokenId;
                        }
                    }
                }
                source = $"generated: uniform token ids in [0, {v}) (seed {options.Seed})"
                    + (options.Padding != PaddingSide.None && mask is not null ? $", pad id {options.PadTokenId} where attention_mask is 0" : "");
            }
            else if (integer && name == AttentionMask)
            {
                ints = mask!;
                source = options.Padding == PaddingSide.None ? "generated: ones"
                    : $"generated: {options.Padding.ToString().ToLowerInvariant()} padding, row b padded by floor((b+1)·seq/(2·batch))";
            }
            else if (integer && name == PositionIds)
            {
                ints = MakePositions(shape, mask, model);
                source = mask is not null && options.Padding != PaddingSide.None
                    ? "generated: cumsum(attention_mask) − 1, 1 at padded positions" : "generated: 0 … seq−1 per row";
            }
            else if (integer)
            {
                ints = new long[count];
                source = name == TokenTypeIds ? "generated: zeros" : "generated: zeros (no rule for this input)";
            }
            else if (kind == DType.Bool)
            {
                result.Add(new InputTensor(name, kind, shape, Enumerable.Repeat(true, (int)count).ToArray(), "generated: true"));
                continue;
            }
            else
            {
                var values = new float[count];
                for (long i = 0; i < count; i++)
                {
                    values[i] = (float)(rng.NextDouble() * 2 - 1);
                }
                Array data = kind switch
                {
                    DType.F32 => values,
                    DType.F16 => values.Select(f => (Half)f).ToArray(),
                    _ => throw ValidateThrow.Invalid(model, $"input {name}", kind.ReportName(), "an int64, int32, float32, float16 or bool input"),
                };
                result.Add(new InputTensor(name, kind, shape, data, $"generated: uniform in [-1, 1) (seed {options.Seed})"));
                continue;
            }
            Array intData = kind == DType.I64 ? ints : ints.Select(x => checked((int)x)).ToArray();
            result.Add(new InputTensor(name, kind, shape, intData, source));
        }
        return result;
    }

    /// <summary>Reads the user's input files and checks them against the declarations.</summary>
    public static List<InputTensor> ReadFiles(
        IReadOnlyDictionary<string, (TensorSignature Signature, string Model)> declared, IReadOnlyList<string> files, long? knownVocab)
    {
        var signatures = declared.ToDictionary(kv => kv.Key, kv => kv.Value.Signature, StringComparer.Ordinal);
        var supplied = new Dictionary<string, InputTensor>(StringComparer.Ordinal);
        foreach (string spec in files)
        {
            var (explicitName, path) = SplitSpec(spec);
            if (!File.Exists(path))
            {
                throw ValidateThrow.InputFileNotFound(path);
            }
            IEnumerable<InputTensor> tensors;
            if (path.EndsWith(".npy", StringComparison.OrdinalIgnoreCase))
            {
                string name = explicitName ?? Path.GetFileNameWithoutExtension(path);
                if (!signatures.TryGetValue(name, out var sig))
                {
                    throw ValidateThrow.Invalid(path, $"input {name}", "a name no model declares", $"one of {string.Join(", ", signatures.Keys)}");
                }
                var npy = NpyReader.Read(path);
                if (npy.ElementType != sig.ElementType)
                {
                    throw ValidateThrow.Invalid(path, $"input {name} dtype", npy.ElementType.ReportName(), $"{sig.ElementType.ReportName()} as the models declare");
                }
                tensors = [new InputTensor(name, npy.ElementType, npy.Shape, npy.Data, $"npy: {path}")];
            }
            else if (path.EndsWith(".json", StringComparison.OrdinalIgnoreCase))
            {
                tensors = JsonInputReader.Read(path, signatures);
            }
            else
            {
                throw ValidateThrow.Option("InputFiles", path, "a .json or .npy file");
            }
            foreach (var t in tensors)
            {
                if (!supplied.TryAdd(t.Name, t))
                {
                    throw ValidateThrow.Invalid(path, $"input {t.Name}", "a second value", $"one value per input (first from {supplied[t.Name].Source})");
                }
            }
        }

        string suppliedList = supplied.Count == 0 ? "nothing" : string.Join(", ", supplied.Keys);
        var symbols = new Dictionary<string, (long Value, string Input)>(StringComparer.Ordinal);
        foreach (var (name, (sig, model)) in declared.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            if (!supplied.TryGetValue(name, out var t))
            {
                throw ValidateThrow.MissingInput(model, name, suppliedList);
            }
            string file = t.Source[(t.Source.IndexOf(' ', StringComparison.Ordinal) + 1)..];
            if (t.Shape.Count != sig.Dims.Count)
            {
                throw ValidateThrow.Invalid(file, $"input {name} shape", $"[{string.Join(", ", t.Shape)}]", $"rank {sig.Dims.Count} [{string.Join(", ", sig.Dims)}] as {model} declares");
            }
            for (int i = 0; i < sig.Dims.Count; i++)
            {
                string dim = sig.Dims[i];
                if (long.TryParse(dim, NumberStyles.None, CultureInfo.InvariantCulture, out long fixedDim))
                {
                    if (t.Shape[i] != fixedDim)
                    {
                        throw ValidateThrow.Invalid(file, $"input {name} dim {i}", t.Shape[i].ToString(CultureInfo.InvariantCulture), $"{fixedDim} as {model} declares");
                    }
                }
                else if (dim != "?")
                {
                    if (symbols.TryGetValue(dim, out var seen) && seen.Value != t.Shape[i])
                    {
                        throw ValidateThrow.Invalid(file, $"input {name} dim {i} ('{dim}')", t.Shape[i].ToString(CultureInfo.InvariantCulture),
                            $"{seen.Value} as input {seen.Input} has it");
                    }
                    symbols[dim] = (t.Shape[i], name);
                }
            }
            if (knownVocab is long v && name == InputIds)
            {
                var ids = t.Data is long[] l ? l : ((int[])t.Data).Select(x => (long)x).ToArray();
                for (long i = 0; i < ids.LongLength; i++)
                {
                    if (ids[i] < 0 || ids[i] >= v)
                    {
                        throw ValidateThrow.Invalid(file, $"input {name} element {i}", ids[i].ToString(CultureInfo.InvariantCulture), $"a token id in [0, {v})");
                    }
                }
            }
        }
        return [.. declared.Keys.Order(StringComparer.Ordinal).Select(n => supplied[n])];
    }

    internal static (string? Name, string Path) SplitSpec(string spec)
    {
        int eq = spec.IndexOf('=', StringComparison.Ordinal);
        if (eq > 0 && !File.Exists(spec))
        {
            string name = spec[..eq];
            if (!name.Contains('/', StringComparison.Ordinal) && !name.Contains('\\', StringComparison.Ordinal))
            {
                return (name, spec[(eq + 1)..]);
            }
        }
        return (null, spec);
    }

    internal static long[] ResolveShape(TensorSignature sig, string model, ValidationOptions options)
    {
        var shape = new long[sig.Dims.Count];
        for (int i = 0; i < shape.Length; i++)
        {
            string dim = sig.Dims[i];
            if (long.TryParse(dim, NumberStyles.None, CultureInfo.InvariantCulture, out long fixedDim))
            {
                shape[i] = fixedDim;
                continue;
            }
            string lower = dim.ToLowerInvariant();
            if (options.Dims.TryGetValue(dim, out long given))
            {
                shape[i] = given;
            }
            else if (lower.Contains("batch", StringComparison.Ordinal))
            {
                shape[i] = options.Batch;
            }
            else if (lower.Contains("past", StringComparison.Ordinal))
            {
                shape[i] = 0;
            }
            else if (lower.Contains("seq", StringComparison.Ordinal) || lower.Contains("len", StringComparison.Ordinal)
                || lower.Contains("token", StringComparison.Ordinal))
            {
                shape[i] = options.Sequence;
            }
            else if (dim == "?" && shape.Length == 2)
            {
                shape[i] = i == 0 ? options.Batch : options.Sequence;
            }
            else
            {
                throw ValidateThrow.Option("Dims", $"no value for dimension '{dim}' of input {sig.Name} in {model}",
                    $"a value for it (--dim {(dim == "?" ? "NAME" : dim)}=N)");
            }
        }
        return shape;
    }

    private static long[] MakeMask(long[] shape, PaddingSide padding, string model)
    {
        long count = Count(shape, model, AttentionMask);
        var mask = new long[count];
        Array.Fill(mask, 1L);
        if (padding == PaddingSide.None)
        {
            return mask;
        }
        if (shape.Length != 2)
        {
            throw ValidateThrow.Option("Padding", $"attention_mask of rank {shape.Length} in {model}", "rank 2 [batch, sequence] to pad");
        }
        long batch = shape[0], seq = shape[1];
        for (long b = 0; b < batch; b++)
        {
            long pad = (b + 1) * seq / (2 * batch);
            for (long j = 0; j < pad; j++)
            {
                long col = padding == PaddingSide.Right ? seq - 1 - j : j;
                mask[b * seq + col] = 0;
            }
        }
        return mask;
    }

    private static long[] MakePositions(long[] shape, long[]? mask, string model)
    {
        long count = Count(shape, model, PositionIds);
        var positions = new long[count];
        long seq = shape.Length == 0 ? 1 : shape[^1];
        if (seq == 0)
        {
            return positions;
        }
        bool masked = mask is not null && mask.Length == count;
        for (long row = 0; row < count / seq; row++)
        {
            long running = 0;
            for (long j = 0; j < seq; j++)
            {
                long i = row * seq + j;
                if (!masked)
                {
                    positions[i] = j;
                    continue;
                }
                running += mask![i];
                positions[i] = mask[i] == 0 ? 1 : running - 1;
            }
        }
        return positions;
    }

    private static long Count(long[] shape, string model, string name)
    {
        long count = 1;
        foreach (long d in shape)
        {
            if (d < 0 || (d != 0 && count > Array.MaxLength / d))
            {
                throw ValidateThrow.Option("Batch/Sequence/Dims", $"shape [{string.Join(", ", shape)}] for input {name} of {model}", "a shape that fits in one array");
            }
            count *= d;
        }
        return count;
    }
}
