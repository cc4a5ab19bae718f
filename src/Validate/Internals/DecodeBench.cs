using System.Diagnostics;
using System.Globalization;
using Microsoft.ML.OnnxRuntime;
using OnnxLora.Core;

namespace OnnxLora.Validate.Internals;

/// <summary>
/// Greedy generation through with-past graphs, as a runtime's generation loop does it: a prefill of the prompt with an
/// empty past (time to first token), then one step per token feeding each <c>present.X</c> output back as the
/// <c>past_key_values.X</c> input, the new token as <c>input_ids</c> [batch, 1], <c>attention_mask</c> over the total
/// sequence and <c>position_ids</c> at the next position. The names are Hugging Face Optimum's with-past convention
/// (exporters/onnx: <c>past_key_values.{i}.key</c> ↔ <c>present.{i}.key</c>), which ONNX Runtime GenAI's decoder
/// defaults follow (src/models: <c>past_key_values.%d.key</c>, <c>present.%d.key</c>). One untimed generation per model
/// keeps its per-step logits for the comparison; then warm-up and timed generations run in interleaved rounds as
/// <see cref="LatencyBench"/> runs.
/// </summary>
internal static class DecodeBench
{
    private const string PastPrefix = "past_key_values.";
    private const string PresentPrefix = "present.";

    /// <summary>The key/value cache of a graph: each past input with the present output that feeds it, in input order.</summary>
    public static IReadOnlyList<(TensorSignature Past, string Present)> Cache(ModelSession s)
    {
        var outputs = s.Outputs.Select(o => o.Name).ToHashSet(StringComparer.Ordinal);
        return [.. s.Inputs
            .Where(i => i.Name.StartsWith(PastPrefix, StringComparison.Ordinal))
            .Select(i => (i, PresentPrefix + i.Name[PastPrefix.Length..]))
            .Where(p => outputs.Contains(p.Item2))];
    }

    /// <summary>
    /// Refuses, before anything runs, a graph the loop cannot feed: one without a key/value cache, with an input other
    /// than input_ids, attention_mask, position_ids and the cache, or a cache whose head and size dimensions are not numbers.
    /// </summary>
    public static void Check(ModelSession s, ValidationOptions options)
    {
        var cache = Cache(s);
        if (cache.Count == 0)
        {
            throw ValidateThrow.Invalid(s.Path, "inputs", "no past_key_values.* inputs with present.* outputs (a graph without a key/value cache)",
                $"a with-past decoder graph (export --with-past or --genai) to generate {options.DecodeTokens} tokens (DecodeTokens, --decode-tokens)");
        }
        var known = cache.Select(c => c.Past.Name).Concat([InputBuilder.InputIds, InputBuilder.AttentionMask, InputBuilder.PositionIds]).ToHashSet(StringComparer.Ordinal);
        if (s.Inputs.FirstOrDefault(i => !known.Contains(i.Name)) is { } other)
        {
            throw ValidateThrow.Invalid(s.Path, $"input {other.Name}", "an input the decode loop cannot feed",
                "only input_ids, attention_mask, position_ids and past_key_values.* (DecodeTokens, --decode-tokens)");
        }
        if (!s.Inputs.Any(i => i.Name == InputBuilder.InputIds) || !s.Outputs.Any(o => o.Name == options.LogitsOutput))
        {
            throw ValidateThrow.Invalid(s.Path, "inputs/outputs", "no input_ids input or no " + options.LogitsOutput + " output",
                "a decoder with input_ids in and logits out (DecodeTokens, --decode-tokens)");
        }
        foreach (var (past, _) in cache)
        {
            if (past.Dims.Count != 4 || !long.TryParse(past.Dims[1], NumberStyles.None, CultureInfo.InvariantCulture, out _)
                || !long.TryParse(past.Dims[3], NumberStyles.None, CultureInfo.InvariantCulture, out _)
                || past.ElementType is not (DType.F32 or DType.F16))
            {
                throw ValidateThrow.Invalid(s.Path, $"input {past.Name}", InputBuilder.Describe(past),
                    "float32 or float16 [batch, num_kv_heads, past_sequence, head_dim] with numeric heads and head size");
            }
        }
    }

    public static DecodeReport Measure(IReadOnlyList<ModelSession> models, ValidationOptions options, long vocab, bool cuda, CancellationToken cancel)
    {
        int batch = options.Batch, prompt = options.PromptTokens, n = options.DecodeTokens, k = models.Count;
        var rng = new Random(options.Seed);
        var promptIds = new long[(long)batch * prompt];
        for (int i = 0; i < promptIds.Length; i++)
        {
            promptIds[i] = rng.NextInt64(vocab);
        }

        var reference = models.Select(m => Generate(m, promptIds, batch, prompt, n, options.LogitsOutput, keepLogits: true, cancel)).ToArray();
        for (int w = 0; w < options.Warmup; w++)
        {
            for (int j = 0; j < k; j++)
            {
                _ = Generate(models[(w + j) % k], promptIds, batch, prompt, n, options.LogitsOutput, keepLogits: false, cancel);
            }
        }
        var timed = models.Select(_ => new List<Generation>()).ToArray();
        for (int r = 0; r < options.DecodeRuns; r++)
        {
            for (int j = 0; j < k; j++)
            {
                int m = (r + j) % k;
                timed[m].Add(Generate(models[m], promptIds, batch, prompt, n, options.LogitsOutput, keepLogits: false, cancel));
            }
        }

        var perModel = new List<ModelDecode>();
        var roundMedians = new List<IReadOnlyList<double>>();
        for (int m = 0; m < k; m++)
        {
            var first = timed[m].Select(g => g.FirstMs).ToList();
            var steps = timed[m].SelectMany(g => g.StepMs).ToList();
            double stepSeconds = steps.Sum() / 1000.0;
            perModel.Add(new ModelDecode(models[m].Role, Stats.Summarise(first), Stats.Summarise(steps),
                stepSeconds > 0 ? (double)batch * steps.Count / stepSeconds : double.NaN, first, steps, reference[m].Tokens));
            roundMedians.Add([.. timed[m].Select(g => Stats.Percentile([.. g.StepMs.Order()], 0.5))]);
        }
        var ratios = LatencyBench.Ratios([.. models.Select(x => x.Role)], roundMedians);

        var comparisons = new List<DecodeComparison>();
        for (int m = 1; m < k; m++)
        {
            comparisons.Add(Compare(reference[0], reference[m], models[m].Role, batch, n, options));
        }
        string method = "one ONNX Runtime session per model; the same seeded prompt for every model; each step's inputs are new CPU OrtValues "
            + "and the previous step's present.* outputs are fed back as past_key_values.* without copying"
            + (cuda ? " (outputs come back to the CPU each step)" : "")
            + "; a step's time covers building its inputs, the run and the argmax of the last position";
        return new DecodeReport(prompt, promptIds, n, batch, options.Warmup, options.DecodeRuns, method, perModel, ratios, comparisons);
    }

    private static DecodeComparison Compare(Generation merged, Generation reference, ModelRole role, int batch, int n, ValidationOptions options)
    {
        long matching = 0;
        int? firstDifferent = null;
        for (int t = 0; t < n; t++)
        {
            for (int b = 0; b < batch; b++)
            {
                if (merged.Tokens[b * n + t] == reference.Tokens[b * n + t])
                {
                    matching++;
                }
                else
                {
                    firstDifferent ??= t;
                }
            }
        }
        int steps = firstDifferent is int d ? d + 1 : n;
        long vocab = merged.Logits!.Length / ((long)n * batch);
        long count = steps * batch * vocab;
        var logits = ComparisonMath.Compare(
            "logits", [steps, batch, vocab], merged.LogitsType, reference.LogitsType,
            merged.Logits.AsSpan(0, (int)count), reference.Logits!.AsSpan(0, (int)count), options.Atol, options.Rtol, top1: true);
        return new DecodeComparison(role, role != ModelRole.Base, matching, firstDifferent, steps, logits);
    }

    /// <summary>One greedy generation: the tokens [batch, n] row-major, the step times, and with keepLogits the last-position logits [n, batch, vocab].</summary>
    private sealed record Generation(long[] Tokens, double FirstMs, double[] StepMs, float[]? Logits, DType LogitsType);

    private static Generation Generate(ModelSession s, long[] promptIds, int batch, int prompt, int n, string logitsName, bool keepLogits, CancellationToken cancel)
    {
        var cache = Cache(s);
        bool hasMask = s.Inputs.Any(i => i.Name == InputBuilder.AttentionMask);
        bool hasPositions = s.Inputs.Any(i => i.Name == InputBuilder.PositionIds);
        var inputNames = new List<string> { InputBuilder.InputIds };
        if (hasMask)
        {
            inputNames.Add(InputBuilder.AttentionMask);
        }
        if (hasPositions)
        {
            inputNames.Add(InputBuilder.PositionIds);
        }
        inputNames.AddRange(cache.Select(c => c.Past.Name));
        var outputNames = new List<string> { logitsName };
        outputNames.AddRange(cache.Select(c => c.Present));

        var tokens = new long[(long)batch * n];
        var stepMs = new double[n - 1];
        double firstMs = 0;
        float[]? kept = null;
        var logitsType = DType.F32;
        var owned = new List<OrtValue>();
        IDisposableReadOnlyCollection<OrtValue>? previous = null;
        try
        {
            // The empty past of the prefill: [batch, heads, 0, head_dim] (no data to allocate).
            var past = cache.Select(c =>
            {
                long[] shape = [batch, long.Parse(c.Past.Dims[1], CultureInfo.InvariantCulture), 0, long.Parse(c.Past.Dims[3], CultureInfo.InvariantCulture)];
                var value = OrtValue.CreateAllocatedTensorValue(OrtAllocator.DefaultInstance, OrtTypes.ToOrt(c.Past.ElementType, $"input {c.Past.Name}"), shape);
                owned.Add(value);
                return value;
            }).ToList();

            for (int t = 0; t < n; t++)
            {
                cancel.ThrowIfCancellationRequested();
                long start = Stopwatch.GetTimestamp();
                int length = t == 0 ? prompt : 1;
                int total = prompt + t;
                var ids = new long[batch * length];
                var positions = new long[batch * length];
                for (int b = 0; b < batch; b++)
                {
                    for (int j = 0; j < length; j++)
                    {
                        ids[b * length + j] = t == 0 ? promptIds[b * prompt + j] : tokens[b * n + t - 1];
                        positions[b * length + j] = t == 0 ? j : total - 1;
                    }
                }
                var mask = new long[batch * total];
                Array.Fill(mask, 1L);

                using var idsValue = OrtValue.CreateTensorValueFromMemory(ids, [batch, length]);
                using var maskValue = OrtValue.CreateTensorValueFromMemory(mask, [batch, total]);
                using var positionsValue = OrtValue.CreateTensorValueFromMemory(positions, [batch, length]);
                var values = new List<OrtValue> { idsValue };
                if (hasMask)
                {
                    values.Add(maskValue);
                }
                if (hasPositions)
                {
                    values.Add(positionsValue);
                }
                values.AddRange(past);

                var results = s.Run(inputNames, values, outputNames);
                previous?.Dispose();
                previous = results;

                var logits = results[0];
                var info = logits.GetTensorTypeAndShape();
                long[] shape = info.Shape;
                if (shape.Length != 3 || shape[0] != batch || shape[1] != length || shape[2] < 1)
                {
                    throw ValidateThrow.Invalid(s.Path, $"output {logitsName} shape", $"[{string.Join(", ", shape)}]",
                        $"[{batch}, {length}, vocab] for a step of {length} token(s) per row");
                }
                int vocab = checked((int)shape[2]);
                if (!OrtTypes.TryDType(info.ElementDataType, out logitsType) || logitsType is not (DType.F32 or DType.F16))
                {
                    throw ValidateThrow.Invalid(s.Path, $"output {logitsName}", info.ElementDataType.ToString(), "float32 or float16 logits");
                }
                for (int b = 0; b < batch; b++)
                {
                    int offset = (b * length + length - 1) * vocab;
                    var row = LastRow(logits, logitsType, offset, vocab);
                    tokens[b * n + t] = ComparisonMath.ArgMax(row);
                    if (keepLogits)
                    {
                        kept ??= new float[(long)n * batch * vocab];
                        row.CopyTo(kept.AsSpan((t * batch + b) * vocab, vocab));
                    }
                }
                past = [.. results.Skip(1)];
                double ms = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
                if (t == 0)
                {
                    firstMs = ms;
                }
                else
                {
                    stepMs[t - 1] = ms;
                }
            }
        }
        finally
        {
            previous?.Dispose();
            foreach (var v in owned)
            {
                v.Dispose();
            }
        }
        return new Generation(tokens, firstMs, stepMs, kept, logitsType);
    }

    /// <summary>One row of logits as float32 (float16 converted).</summary>
    private static ReadOnlySpan<float> LastRow(OrtValue logits, DType type, int offset, int vocab)
    {
        if (type == DType.F32)
        {
            return logits.GetTensorDataAsSpan<float>().Slice(offset, vocab);
        }
        var half = logits.GetTensorDataAsSpan<Float16>().Slice(offset, vocab);
        var row = new float[vocab];
        for (int i = 0; i < vocab; i++)
        {
            row[i] = half[i].ToFloat();
        }
        return row;
    }
}
