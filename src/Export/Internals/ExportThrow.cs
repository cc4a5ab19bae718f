using OnnxLora.Core;

namespace OnnxLora.Export.Internals;

/// <summary>Export errors: thin names over <see cref="OnnxLoraException"/>'s factories.</summary>
internal static class ExportThrow
{
    public static OnnxLoraException Option(string name, string found, string expected) =>
        OnnxLoraException.InvalidOption("ExportOptions." + name, found, expected);

    public static OnnxLoraException UnknownModel(Type type) =>
        OnnxLoraException.Invalid("<root>", $"model type {type.FullName} cannot be exported; expected a model implementing IOnnxExportableModel (LlamaForCausalLM, BertModel).");

    public static OnnxLoraException UnknownAdapter(Type type) =>
        OnnxLoraException.Invalid("", $"module type {type.FullName} has no merged-weight rule; expected LoraLinear or LoraEmbedding.");
}
