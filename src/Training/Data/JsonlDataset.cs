using System.Text.Json;
using OnnxLora.Core;
using OnnxLora.Training.Data.Internals;

namespace OnnxLora.Training.Data;

/// <summary>
/// Reads training data from JSON Lines: one JSON object per line, blank lines skipped.
/// <list type="bullet">
/// <item><c>{"text": "..."}</c>: tokenized with the checkpoint's tokenizer (special tokens of its template included).</item>
/// <item><c>{"input_ids": [1, 2, ...]}</c>: used as given (each id checked against the vocabulary size).</item>
/// <item>For <see cref="TrainingTask.SequenceClassification"/> each line also holds <c>"label": n</c> (a class index).</item>
/// </list>
/// Other fields are ignored. Sequences longer than the maximum length are cut at the end. Any
/// malformed line is a bad-input <see cref="OnnxLoraException"/> naming the file and the line number.
/// </summary>
public static class JsonlDataset
{
    /// <summary>Reads every example of <paramref name="path"/>.</summary>
    /// <param name="path">The .jsonl file.</param>
    /// <param name="task">Decides whether a "label" is required.</param>
    /// <param name="tokenizer">Tokenizes "text" lines; null when the checkpoint has none (then only "input_ids" lines are accepted).</param>
    /// <param name="vocabSize">Ids must be below this.</param>
    /// <param name="maxLength">Longer sequences are cut to this many tokens.</param>
    /// <param name="numLabels">For classification: labels must be below this; null accepts any non-negative label.</param>
    /// <exception cref="OnnxLoraException">Bad input: the file does not exist, a line is malformed, or the file holds no example.</exception>
    public static IReadOnlyList<TrainingExample> Read(string path, TrainingTask task, CheckpointTokenizer? tokenizer,
        int vocabSize, int maxLength, int? numLabels = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(vocabSize);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxLength, 2);
        string file = Path.GetFullPath(path);
        if (!File.Exists(file))
        {
            throw OnnxLoraException.NotFound("data file", file);
        }
        var examples = new List<TrainingExample>();
        int lineNumber = 0;
        using var reader = new StreamReader(file, System.Text.Encoding.UTF8, detectEncodingFromByteOrderMarks: true);
        while (reader.ReadLine() is { } line)
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(line))
            {
                continue;
            }
            examples.Add(ParseLine(file, lineNumber, line, task, tokenizer, vocabSize, maxLength, numLabels));
        }
        if (examples.Count == 0)
        {
            throw DataThrow.File(file, "no examples: the file holds no non-blank line.");
        }
        return examples;
    }

    private static TrainingExample ParseLine(string file, int lineNumber, string line, TrainingTask task,
        CheckpointTokenizer? tokenizer, int vocabSize, int maxLength, int? numLabels)
    {
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(line, new JsonDocumentOptions { MaxDepth = 16 });
        }
        catch (JsonException e)
        {
            throw DataThrow.Line(file, lineNumber, $"not valid JSON ({e.Message})", e);
        }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw DataThrow.Line(file, lineNumber, "line", root.ValueKind.ToString(), "a JSON object");
            }
            bool hasText = root.TryGetProperty("text", out var text);
            bool hasIds = root.TryGetProperty("input_ids", out var ids);
            if (hasText == hasIds)
            {
                throw DataThrow.Line(file, lineNumber, "fields", hasText ? "both \"text\" and \"input_ids\"" : "neither \"text\" nor \"input_ids\"",
                    "exactly one of them");
            }
            int[] tokens = hasText
                ? Tokenize(file, lineNumber, text, tokenizer, maxLength)
                : Ids(file, lineNumber, ids, vocabSize, maxLength);
            if (hasText)
            {
                for (int i = 0; i < tokens.Length; i++)
                {
                    if (tokens[i] >= vocabSize)
                    {
                        throw DataThrow.Line(file, lineNumber, "token id from the tokenizer", tokens[i].ToString(System.Globalization.CultureInfo.InvariantCulture),
                            $"an id below the model's vocab_size {vocabSize} (tokenizer and config disagree)");
                    }
                }
            }
            int minimum = task == TrainingTask.CausalLanguageModeling ? 2 : 1;
            if (tokens.Length < minimum)
            {
                throw DataThrow.Line(file, lineNumber, "sequence length", $"{tokens.Length} tokens",
                    task == TrainingTask.CausalLanguageModeling ? "at least 2 (next-token prediction needs a target)" : "at least 1");
            }
            int? label = task == TrainingTask.SequenceClassification ? Label(file, lineNumber, root, numLabels) : null;
            return new TrainingExample(tokens, label, lineNumber);
        }
    }

    private static int[] Tokenize(string file, int lineNumber, JsonElement text, CheckpointTokenizer? tokenizer, int maxLength)
    {
        if (text.ValueKind != JsonValueKind.String)
        {
            throw DataThrow.Line(file, lineNumber, "\"text\"", text.ValueKind.ToString(), "a string");
        }
        if (tokenizer is null)
        {
            throw DataThrow.Line(file, lineNumber, "\"text\" needs the checkpoint's tokenizer.json, and the checkpoint has none; give {\"input_ids\": [...]} instead.");
        }
        if (maxLength <= tokenizer.Prefix.Count + tokenizer.Suffix.Count)
        {
            throw DataThrow.Option("MaxLength", maxLength.ToString(System.Globalization.CultureInfo.InvariantCulture),
                $"more than the {tokenizer.Prefix.Count + tokenizer.Suffix.Count} special tokens the tokenizer adds, to leave room for text");
        }
        return tokenizer.Encode(text.GetString()!, maxLength);
    }

    private static int[] Ids(string file, int lineNumber, JsonElement ids, int vocabSize, int maxLength)
    {
        if (ids.ValueKind != JsonValueKind.Array)
        {
            throw DataThrow.Line(file, lineNumber, "\"input_ids\"", ids.ValueKind.ToString(), "an array of token ids");
        }
        int count = Math.Min(ids.GetArrayLength(), maxLength);
        var result = new int[count];
        int i = 0;
        foreach (var id in ids.EnumerateArray())
        {
            if (id.ValueKind != JsonValueKind.Number || !id.TryGetInt32(out int value) || value < 0 || value >= vocabSize)
            {
                throw DataThrow.Line(file, lineNumber, $"\"input_ids\"[{i}]", id.GetRawText(), $"an integer in [0, {vocabSize})");
            }
            if (i < count)
            {
                result[i] = value;
            }
            i++;
        }
        return result;
    }

    private static int Label(string file, int lineNumber, JsonElement root, int? numLabels)
    {
        if (!root.TryGetProperty("label", out var label))
        {
            throw DataThrow.Line(file, lineNumber, "\"label\"", "(missing)", "an integer class index (sequence classification)");
        }
        string expected = numLabels is int n ? $"an integer in [0, {n})" : "a non-negative integer";
        if (label.ValueKind != JsonValueKind.Number || !label.TryGetInt32(out int value) || value < 0 || value >= (numLabels ?? int.MaxValue))
        {
            throw DataThrow.Line(file, lineNumber, "\"label\"", label.GetRawText(), expected);
        }
        return value;
    }
}
