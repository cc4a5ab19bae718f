using OnnxLora.Validate.Internals;

namespace OnnxLora.Validate;

/// <summary>The task metric section, shared by the Markdown and HTML reports.</summary>
public static partial class ReportWriter
{
    private static string TaskIntro(TaskMetricsReport task) =>
        $"{task.Metric} ({task.Task}) of each model on {task.Examples} rows of {task.DataFile}, one unpadded row at a time"
        + (task.Agreement.Count > 0 ? "; agreement: share of rows on which the model predicts the merged model's class." : ".");

    private static string[] TaskHeader(TaskMetricsReport task) =>
        task.Agreement.Count > 0 ? ["Model", "Accuracy", "Agreement with merged"] : ["Model", "Perplexity", ""];

    private static IEnumerable<string[]> TaskRows(TaskMetricsReport task) => task.Models.Select(m => new[]
    {
        Fmt.Role(m.Role),
        task.Agreement.Count > 0 ? Fmt.Share(m.Value) : Fmt.Num(m.Value),
        task.Agreement.FirstOrDefault(a => a.Role == m.Role) is { } a ? Fmt.Share(a.Value) : m.Role == ModelRole.Merged || task.Agreement.Count == 0 ? "" : "–",
    });
}
