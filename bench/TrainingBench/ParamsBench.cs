using OnnxLora.Core.Peft;
using OnnxLora.Models.Llama;
using OnnxLora.Models.Lora;

namespace OnnxLora.TrainingBench;

/// <summary>Trainable parameters and AdamW state of LoRA vs full fine-tuning (counted on the real modules).</summary>
internal sealed record ParamCount(int Hidden, int Layers, int Rank, long Total, long LoraTrainable, long Formula, long PerMatrix);

internal static class ParamsBench
{
    public static ParamCount Count(int hidden, int layers, int rank)
    {
        var config = CompareBench.Config(hidden, layers);
        using var model = new LlamaForCausalLM(config);
        long total = model.parameters().Sum(p => p.numel());
        LoraInjection.Apply(model, new PeftAdapterConfig { TargetModules = TargetModules.FromList(CompareBench.Targets), R = rank, Alpha = 2 * rank });
        long lora = LoraInjection.TrainableParameters(model).Sum(p => p.Parameter.numel());
        // q, k, v, o are d×d here (as many key/value heads as heads): 2·r·d each.
        long perMatrix = 2L * rank * hidden;
        return new ParamCount(hidden, layers, rank, total, lora, perMatrix * CompareBench.Targets.Length * layers, perMatrix);
    }
}
