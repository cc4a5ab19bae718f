using OnnxLora.Validate.Internals;

namespace OnnxLora.Validate;

public static partial class ReportWriter
{
    /// <summary>
    /// The JSON report, as docs/report-schema.md documents it: every documented field is always present (null when
    /// it does not apply) and non-finite numbers are written as null. Serialized by the source-generated
    /// <see cref="ReportJsonContext"/>; <see cref="ReportJson"/> is the shape.
    /// </summary>
    public static string ToJson(ValidationReport report)
    {
        ArgumentNullException.ThrowIfNull(report);
        return ReportJson.From(report).Serialize() + "\n";
    }
}
