using OnnxLora.Core;
using OnnxLora.Core.Peft;
using OnnxLora.Training.Lora;
using static TorchSharp.torch;

namespace OnnxLora.Training.Peft;

/// <summary>
/// Puts a PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors) onto a TorchSharp
/// model: wraps the modules adapter_config.json targets, exactly as PEFT would, and loads the trained
/// tensors into them. The reverse of what the trainer saves.
/// </summary>
public static class PeftModelAdapter
{
    /// <summary>The injection options equivalent to a PEFT LoRA config.</summary>
    /// <exception cref="OnnxLoraException">Bad input: the adapter is not a LoRA adapter (LoHa/LoKr merge only; they have no trainable
    /// TorchSharp layer here), or has no target_modules.</exception>
    public static LoraOptions ToLoraOptions(PeftAdapterConfig config, string source)
    {
        ArgumentNullException.ThrowIfNull(config);
        if (config.PeftType != PeftType.Lora)
        {
            throw OnnxLoraException.Invalid(source, $"peft_type {config.PeftType.ToString().ToUpperInvariant()} adapters can be merged (merge-export merge) but not attached to a TorchSharp model; only LORA adapters can.");
        }
        var targets = config.TargetModules ?? throw OnnxLoraException.Invalid(source, "field 'target_modules'", "nothing", "a list, a regex or \"all-linear\"");
        return new LoraOptions
        {
            TargetModules = targets.Kind switch
            {
                TargetModulesKind.AllLinear => LoraTargetModules.AllLinear,
                TargetModulesKind.Regex => LoraTargetModules.Regex(targets.Pattern!),
                _ => LoraTargetModules.Of(targets.Names),
            },
            Rank = config.R,
            Alpha = config.Alpha,
            Dropout = config.LoraDropout,
            UseRsLora = config.UseRsLora,
            UseDora = config.UseDora,
            RankPattern = config.RankPattern.ToList(),
            AlphaPattern = config.AlphaPattern.ToList(),
            ModulesToSave = config.ModulesToSave ?? [],
        };
    }

    /// <summary>Wraps the targeted modules of <paramref name="model"/> and loads the adapter's tensors; the model is left in eval mode.</summary>
    /// <exception cref="OnnxLoraException">Bad input: the adapter is malformed or does not fit the model (missing/extra keys, wrong
    /// shapes), naming them.</exception>
    public static LoraInjectionReport Attach(nn.Module model, string adapterDirectory)
    {
        ArgumentNullException.ThrowIfNull(model);
        using var adapter = PeftAdapter.Load(adapterDirectory);
        var options = ToLoraOptions(adapter.Config, adapter.Directory);
        LoraInjectionReport report;
        try
        {
            report = LoraInjection.Apply(model, options);
        }
        catch (OnnxLoraException e) when (e.Kind == ErrorKind.BadInput)
        {
            throw OnnxLoraException.Invalid(adapter.Directory, $"the adapter does not fit this model: {e.Message}", e);
        }
        using (var scope = NewDisposeScope())
        {
            var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
            foreach (var info in adapter.Weights.Tensors)
            {
                tensors[info.Name] = tensor(adapter.Weights.ReadSingles(info), info.Shape.ToArray());
            }
            LoraAdapterState.Load(model, tensors, adapter.Weights.Path);
        }
        model.eval();
        return report;
    }
}
