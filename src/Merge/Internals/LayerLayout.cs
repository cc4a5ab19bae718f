using System.Text.Json;
using OnnxLora.Core.Peft;

namespace OnnxLora.Merge.Internals;

/// <summary>
/// Decides fan_in_fan_out of a linear LoRA module from the layer it updates, as PEFT does when it
/// wraps the layer (peft/tuners/lora/layer.py, <c>dispatch_default</c>): an nn.Linear forces it false and
/// transformers' Conv1D (GPT-2 style, weight stored [in, out]) forces it true, each with a warning when
/// the config says otherwise. Here the layer type comes from the weight's shape when it is not square,
/// else from the model family (config.json's model_type); when neither tells, the config decides.
/// </summary>
internal static class LayerLayout
{
    /// <summary>Model families whose attention/MLP projections are transformers' Conv1D, and those module names.</summary>
    private static readonly string[] Conv1DFamilies = ["gpt2", "openai-gpt", "imagegpt", "decision_transformer"];

    private static readonly string[] Conv1DModules = ["c_attn", "q_attn", "c_proj", "c_fc"];

    /// <summary>Model families whose linear layers are all nn.Linear (only consulted for square weights).</summary>
    private static readonly string[] LinearFamilies =
    [
        "llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "gemma", "gemma2", "phi", "phi3", "bert", "roberta",
        "distilbert", "t5", "bart", "opt", "falcon", "gpt_neox", "gptj", "gpt_bigcode", "bloom", "starcoder2", "olmo", "stablelm",
    ];

    /// <summary>
    /// The fan_in_fan_out the layer behind <paramref name="weightShape"/> implies for <paramref name="module"/>,
    /// or null when neither the shape nor the model family tells (or the module is not linear LoRA).
    /// </summary>
    public static bool? FanInFanOutOf(AdapterModule module, IReadOnlyList<long>? weightShape, string? modelType)
    {
        if (module.Kind != AdapterModuleKind.Lora)
        {
            return null;
        }
        long outF = module.OutFeatures, inF = module.InFeatures;
        if (weightShape is { Count: 2 } s && outF != inF)
        {
            if (s[0] == outF && s[1] == inF)
            {
                return false;
            }
            if (s[0] == inF && s[1] == outF)
            {
                return true;
            }
            return null;
        }
        return FromFamily(module, modelType);
    }

    /// <summary>What the model family says about the module's layer, or null when the family is not listed.</summary>
    private static bool? FromFamily(AdapterModule module, string? modelType)
    {
        if (modelType is null)
        {
            return null;
        }
        if (Conv1DFamilies.Contains(modelType, StringComparer.Ordinal))
        {
            string last = module.ModulePath[(module.ModulePath.LastIndexOf('.') + 1)..];
            return Conv1DModules.Contains(last, StringComparer.Ordinal);
        }
        return LinearFamilies.Contains(modelType, StringComparer.Ordinal) ? false : null;
    }

    /// <summary>
    /// <paramref name="module"/> with the fan_in_fan_out its layer implies; adds a warning naming the
    /// adapter, module and tensor when that overrides the config (PEFT warns the same way).
    /// </summary>
    public static AdapterModule Decide(PeftAdapter adapter, AdapterModule module, string tensor, IReadOnlyList<long>? weightShape, string? modelType, List<string> warnings)
    {
        if (FanInFanOutOf(module, weightShape, modelType) is not { } decided || decided == module.FanInFanOut)
        {
            return module;
        }
        string layer = decided ? "a Conv1D weight stored [in, out]" : "an nn.Linear weight stored [out, in]";
        string why = FromFamily(module, modelType) == decided
            ? $"model_type '{modelType}'"
            : $"its shape [{string.Join(", ", weightShape ?? [])}]";
        warnings.Add($"{adapter.Directory}: fan_in_fan_out is {(module.FanInFanOut ? "true" : "false")} in adapter_config.json but '{tensor}' is {layer} ({why}); module '{module.ModulePath}' is merged with fan_in_fan_out {(decided ? "true" : "false")}, as PEFT decides by layer type.");
        return module.WithFanInFanOut(decided);
    }

    /// <summary>model_type from a config.json in <paramref name="directory"/>, or null when there is none or it cannot be read.</summary>
    public static string? ModelTypeIn(string? directory)
    {
        if (directory is null)
        {
            return null;
        }
        string path = Path.Combine(directory, "config.json");
        try
        {
            if (!File.Exists(path) || new FileInfo(path).Length > (16 << 20))
            {
                return null;
            }
            using var doc = JsonDocument.Parse(File.ReadAllBytes(path), new JsonDocumentOptions { MaxDepth = 64 });
            return doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("model_type", out var t) && t.ValueKind == JsonValueKind.String
                ? t.GetString()
                : null;
        }
        catch (JsonException)
        {
            return null;
        }
        catch (IOException)
        {
            return null;
        }
    }
}
