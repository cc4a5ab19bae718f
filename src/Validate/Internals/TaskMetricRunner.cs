using System.Text.Json;
using OnnxLora.Core;

namespace OnnxLora.Validate.Internals;

/// <summary>
/// Runs every model on the rows of a task data file, one unpadded row at a time (so no padding convention can make
/// the models differ), and scores the logits. Rows are the trainer's pre-tokenized JSON Lines format:
/// <c>{"input_ids": [...], "label": k}</c> for classification, <c>{"input_ids": [...]}</c> for causal LM. Inputs the
/// models declare are fed as the models' own defaults would be: <c>attention_mask</c> ones, <c>token_type_ids</c>
/// zeros, <c>position_ids</c> 0..n−1.
/// </summary>
internal static class TaskMetricRunner
{
    public const string Classification = "text-classification";
    public const string Generation = "text-generation";

    /// <summary>Rows beyond this are not read: the metric is a check, not a benchmark.</summary>
    public const int MaxRows = 100_000;

    public static TaskMetricsReport Evaluate(IReadOnlyList<ModelSession> sessions, string dataFile, string logitsOutput, CancellationToken ct)
    {
        string path = Path.GetFullPath(dataFile);
        var rows = Read(path);
        bool classification = rows[0].Label is not null;
        var declared = sessions[0].Inputs;
        foreach (var input in declared)
        {
            if (input.Name is not (InputBuilder.InputIds or InputBuilder.AttentionMask or InputBuilder.TokenTypeIds or InputBuilder.PositionIds) || input.ElementType != DType.I64)
            {
                throw ValidateThrow.Invalid(sessions[0].Path, $"input '{input.Name}'", input.ElementType.ToString(),
                    $"int64 inputs among {InputBuilder.InputIds}, {InputBuilder.AttentionMask}, {InputBuilder.TokenTypeIds}, {InputBuilder.PositionIds} to score --data {path}");
            }
        }
        var correct = new long[sessions.Count];
        var agree = new long[sessions.Count];
        var nll = new double[sessions.Count];
        long predictedTokens = 0;
        foreach (var row in rows)
        {
            ct.ThrowIfCancellationRequested();
            long n = row.Ids.Length;
            var tensors = declared.Select(input => new InputTensor(input.Name, DType.I64, [1, n], input.Name switch
            {
                InputBuilder.InputIds => row.Ids,
                InputBuilder.AttentionMask => Enumerable.Repeat(1L, (int)n).ToArray(),
                InputBuilder.PositionIds => Enumerable.Range(0, (int)n).Select(i => (long)i).ToArray(),
                _ => new long[n],
            }, $"--data {Path.GetFileName(path)}")).ToList();
            using var inputSet = new InputSet(tensors);
            int mergedClass = -1;
            for (int m = 0; m < sessions.Count; m++)
            {
                var logits = Logits(sessions[m], inputSet, logitsOutput);
                if (classification)
                {
                    CheckShape(sessions[m], logits, logitsOutput, 2, "[batch, labels]");
                    int predicted = ArgMax(logits.Data, 0, logits.Data.Length);
                    if (row.Label >= logits.Data.Length)
                    {
                        throw ValidateThrow.Invalid(path, $"line {row.Line}: label", $"{row.Label}", $"a class of the model's {logits.Data.Length} ({sessions[m].Path})");
                    }
                    correct[m] += predicted == row.Label ? 1 : 0;
                    mergedClass = m == 0 ? predicted : mergedClass;
                    agree[m] += predicted == mergedClass ? 1 : 0;
                }
                else
                {
                    CheckShape(sessions[m], logits, logitsOutput, 3, "[batch, sequence, vocab]");
                    int vocab = (int)logits.Shape[2];
                    for (int t = 0; t + 1 < n; t++)
                    {
                        long target = row.Ids[t + 1];
                        if (target >= vocab)
                        {
                            throw ValidateThrow.Invalid(path, $"line {row.Line}: token id", $"{target}", $"an id below the model's vocabulary {vocab}");
                        }
                        nll[m] -= LogSoftmaxAt(logits.Data, t * vocab, vocab, (int)target);
                    }
                }
            }
            predictedTokens += Math.Max(0, n - 1);
        }
        var values = sessions.Select((s, m) => new TaskMetricValue(s.Role,
            classification ? (double)correct[m] / rows.Count : Math.Exp(nll[m] / Math.Max(1, predictedTokens)))).ToList();
        var agreement = classification ? sessions.Skip(1).Select((s, i) => new TaskMetricValue(s.Role, (double)agree[i + 1] / rows.Count)).ToList() : [];
        return new TaskMetricsReport(path, classification ? Classification : Generation, classification ? "accuracy" : "perplexity", rows.Count, values, agreement);
    }

    private sealed record Row(int Line, long[] Ids, int? Label);

    private static List<Row> Read(string path)
    {
        if (!File.Exists(path))
        {
            throw OnnxLoraException.NotFound("data file", path);
        }
        var rows = new List<Row>();
        int line = 0;
        foreach (string text in File.ReadLines(path))
        {
            line++;
            if (string.IsNullOrWhiteSpace(text))
            {
                continue;
            }
            if (rows.Count == MaxRows)
            {
                break;
            }
            rows.Add(Parse(path, line, text));
            if (rows[^1].Label is null != rows[0].Label is null)
            {
                throw ValidateThrow.Invalid(path, $"line {line}", rows[0].Label is null ? "a label" : "no label",
                    $"the same kind of row throughout (line {rows[0].Line} {(rows[0].Label is null ? "has none" : "has one")})");
            }
        }
        return rows.Count > 0 ? rows : throw ValidateThrow.Invalid(path, "no rows; expected JSON Lines {\"input_ids\": [...], \"label\": k}.");
    }

    private static Row Parse(string path, int line, string text)
    {
        try
        {
            using var doc = JsonDocument.Parse(text);
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("input_ids", out var ids) || ids.ValueKind != JsonValueKind.Array || ids.GetArrayLength() == 0)
            {
                string found = root.ValueKind == JsonValueKind.Object && root.TryGetProperty("text", out _) ? "a text row" : "no input_ids array";
                throw ValidateThrow.Invalid(path, $"line {line}", found, "pre-tokenized rows {\"input_ids\": [ids...], \"label\": k} (text needs the checkpoint's tokenizer: pre-tokenize it)");
            }
            long[] values = ids.EnumerateArray().Select(v => v.TryGetInt64(out long id) && id >= 0 ? id : throw ValidateThrow.Invalid(path, $"line {line}: input_ids value", v.GetRawText(), "a non-negative integer")).ToArray();
            int? label = null;
            if (root.TryGetProperty("label", out var l))
            {
                label = l.TryGetInt32(out int k) && k >= 0 ? k : throw ValidateThrow.Invalid(path, $"line {line}: label", l.GetRawText(), "a non-negative integer class");
            }
            return new Row(line, values, label);
        }
        catch (JsonException e)
        {
            throw ValidateThrow.Invalid(path, $"line {line} is not JSON: {e.Message}", e);
        }
    }

    private static HostTensor Logits(ModelSession session, InputSet inputs, string name) =>
        session.RunForOutputs(inputs).TryGetValue(name, out var logits) ? logits
            : throw ValidateThrow.Invalid(session.Path, $"no output '{name}' to score --data with; the model's outputs are {string.Join(", ", session.Outputs.Select(o => o.Name))}.");

    private static void CheckShape(ModelSession session, HostTensor logits, string name, int rank, string expected)
    {
        if (logits.Shape.Length != rank || logits.Shape[0] != 1)
        {
            throw ValidateThrow.Invalid(session.Path, $"output '{name}'", $"shape {Fmt.Shape(logits.Shape)}", $"{expected} for these data rows");
        }
    }

    private static int ArgMax(float[] values, int start, int count)
    {
        int best = start;
        for (int i = start + 1; i < start + count; i++)
        {
            best = values[i] > values[best] ? i : best;
        }
        return best - start;
    }

    /// <summary>log softmax(values[start..start+count])[index] in double, max-shifted.</summary>
    private static double LogSoftmaxAt(float[] values, int start, int count, int index)
    {
        double max = double.NegativeInfinity;
        for (int i = 0; i < count; i++)
        {
            max = Math.Max(max, values[start + i]);
        }
        double sum = 0;
        for (int i = 0; i < count; i++)
        {
            sum += Math.Exp(values[start + i] - max);
        }
        return values[start + index] - max - Math.Log(sum);
    }
}
