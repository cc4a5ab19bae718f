using OnnxLora.Models.Lora;
using OnnxLora.Models.Peft;
using TorchSharp;

namespace OnnxLora.MergeExport.Internals;

/// <summary>A TorchSharp model loaded from a checkpoint folder, with an adapter attached when given; owns the model.</summary>
internal sealed class LoadedModel : IDisposable
{
    private LoadedModel(torch.nn.Module module, LoraInjectionReport? injection)
    {
        Module = module;
        Injection = injection;
    }

    public torch.nn.Module Module { get; }

    public LoraInjectionReport? Injection { get; }

    public static LoadedModel Load(string modelDir, string? adapterDir)
    {
        var module = PretrainedModel.Load(modelDir);
        try
        {
            var injection = adapterDir is null ? null : PeftModelAdapter.Attach(module, adapterDir);
            return new LoadedModel(module, injection);
        }
        catch
        {
            module.Dispose();
            throw;
        }
    }

    public void Dispose() => Module.Dispose();
}
