namespace OnnxLora.Export.Internals;

/// <summary>The one place export errors are raised.</summary>
internal static class ExportThrow
{
    public static ArgumentException Option(string name, string found, string expected) =>
        new($"export option {name}: found {found}, expected {expected}.", name);

    public static NotSupportedException UnknownModel(Type type) =>
        new($"<root>: model type {type.FullName} cannot be exported; expected a model implementing IOnnxExportableModel (LlamaForCausalLM, BertModel).");

    public static NotSupportedException UnknownAdapter(Type type) =>
        new($"module type {type.FullName} has no merged-weight rule; expected LoraLinear or LoraEmbedding.");
}
