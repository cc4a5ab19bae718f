using OnnxLora.Core;
using OnnxLora.Core.Peft;
using OnnxLora.Models.Lora;
using static TorchSharp.torch;

namespace OnnxLora.Models.Peft;

/// <summary>
/// Puts a PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors) onto a TorchSharp
/// model: wraps the modules adapter_config.json targets, exactly as PEFT would, and loads the trained
/// tensors into them. The reverse of what the trainer saves.
/// </summary>
public static class PeftModelAdapter
{
    /// <summary>Wraps the targeted modules of <paramref name="model"/> and loads the adapter's tensors; the model is left in eval mode.</summary>
    /// <exception cref="OnnxLoraException">Bad input: the adapter is malformed or does not fit the model (missing/extra keys, wrong
    /// shapes), naming them.</exception>
    public static LoraInjectionReport Attach(nn.Module model, string adapterDirectory)
    {
        ArgumentNullException.ThrowIfNull(model);
        using var adapter = PeftAdapter.Load(adapterDirectory);
        LoraInjectionReport report;
        try
        {
            report = LoraInjection.Apply(model, adapter.Config);
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
