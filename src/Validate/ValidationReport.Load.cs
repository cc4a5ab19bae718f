using OnnxLora.Validate.Internals;

namespace OnnxLora.Validate;

public sealed partial record ValidationReport
{
    /// <summary>
    /// Reads a validation.json written by <see cref="ReportWriter.ToJson"/> (schema <see cref="SchemaId"/>, or
    /// <see cref="PreviousSchemaId"/>, read with no <see cref="Decode"/> and default decode options), for comparing runs
    /// (<see cref="RunComparer"/>). Unknown fields are ignored; every documented field must be there.
    /// </summary>
    /// <exception cref="Core.OnnxLoraException">Bad input, in one line naming the file and the field: the file does
    /// not exist, is empty, truncated or not JSON, is not a validation report, is of another schema version
    /// (including <c>onnxlora.validation/1</c>), or has a field missing or of the wrong type.</exception>
    public static ValidationReport Load(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        return ReportReader.Read(path);
    }
}
