namespace OnnxLora.Validate;

/// <summary>
/// The task metric of every model on a labelled data file (<see cref="ValidationOptions.DataFile"/>): accuracy for a
/// classifier (output <c>logits</c> [batch, labels], rows with a <c>label</c>), perplexity for a causal LM (output
/// <c>logits</c> [batch, sequence, vocab], rows without labels). Merged and unmerged must agree; base against merged
/// shows what the adapter bought.
/// </summary>
/// <param name="DataFile">The data file's full path.</param>
/// <param name="Task">"text-classification" or "text-generation" (Hugging Face Optimum's task names).</param>
/// <param name="Metric">"accuracy" (share of rows whose top logit is the label, 0..1) or "perplexity" (exp of the mean next-token negative log-likelihood).</param>
/// <param name="Examples">Rows evaluated (one at a time, unpadded).</param>
/// <param name="Models">The metric per model, in model order (merged first).</param>
/// <param name="Agreement">Classification: share of rows on which each other model predicts the merged model's class, by role; empty for causal LMs.</param>
public sealed record TaskMetricsReport(
    string DataFile,
    string Task,
    string Metric,
    int Examples,
    IReadOnlyList<TaskMetricValue> Models,
    IReadOnlyList<TaskMetricValue> Agreement)
{
    /// <summary>The metric of <paramref name="role"/>, or null when that model was not run.</summary>
    public double? ValueOf(ModelRole role) => Models.FirstOrDefault(m => m.Role == role)?.Value;
}

/// <summary>One model's value of a task metric.</summary>
public sealed record TaskMetricValue(ModelRole Role, double Value);
