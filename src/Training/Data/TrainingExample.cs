namespace OnnxLora.Training.Data;

/// <summary>One tokenized data line.</summary>
/// <param name="InputIds">Token ids, special tokens included, already cut to the maximum length.</param>
/// <param name="Label">The class index for <see cref="TrainingTask.SequenceClassification"/>; null otherwise.</param>
/// <param name="Line">The 1-based line of the data file it came from (0 when made in code).</param>
public sealed record TrainingExample(IReadOnlyList<int> InputIds, int? Label = null, int Line = 0);
