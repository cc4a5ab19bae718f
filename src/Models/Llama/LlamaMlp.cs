using OnnxLora.Core.HuggingFace;
using OnnxLora.Models.Internals;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace OnnxLora.Models.Llama;

/// <summary>SwiGLU feed-forward: <c>down_proj(silu(gate_proj(x)) ⊙ up_proj(x))</c>.</summary>
public sealed partial class LlamaMlp : nn.Module<Tensor, Tensor>, IChildReplaceable
{
    public LlamaMlp(LlamaConfig config) : base(nameof(LlamaMlp))
    {
        GateProj = LayerFactory.Linear(config.HiddenSize, config.IntermediateSize, config.MlpBias);
        UpProj = LayerFactory.Linear(config.HiddenSize, config.IntermediateSize, config.MlpBias);
        DownProj = LayerFactory.Linear(config.IntermediateSize, config.HiddenSize, config.MlpBias);
        RegisterComponents();
    }

    /// <summary><c>gate_proj</c>: a Linear [intermediate, hidden], or its LoRA wrapper.</summary>
    [field: ComponentName(Name = "gate_proj")]
    public nn.Module<Tensor, Tensor> GateProj { get; private set; }

    /// <summary><c>up_proj</c>: a Linear [intermediate, hidden], or its LoRA wrapper.</summary>
    [field: ComponentName(Name = "up_proj")]
    public nn.Module<Tensor, Tensor> UpProj { get; private set; }

    /// <summary><c>down_proj</c>: a Linear [hidden, intermediate], or its LoRA wrapper.</summary>
    [field: ComponentName(Name = "down_proj")]
    public nn.Module<Tensor, Tensor> DownProj { get; private set; }

    public override Tensor forward(Tensor input)
    {
        using var scope = NewDisposeScope();
        return DownProj.call(Activation(input)).MoveToOuterDisposeScope();
    }

    /// <summary>silu(gate_proj(x)) ⊙ up_proj(x) [.., intermediate]: the block without its down-projection (what selective checkpointing recomputes).</summary>
    internal Tensor Activation(Tensor input)
    {
        using var scope = NewDisposeScope();
        return (nn.functional.silu(GateProj.call(input)) * UpProj.call(input)).MoveToOuterDisposeScope();
    }

    void IChildReplaceable.ReplaceChild(string name, nn.Module<Tensor, Tensor> replacement)
    {
        switch (name)
        {
            case "gate_proj": GateProj = replacement; break;
            case "up_proj": UpProj = replacement; break;
            case "down_proj": DownProj = replacement; break;
            default: throw ModelThrow.Misuse(nameof(name), $"{nameof(LlamaMlp)} has no replaceable child '{name}'");
        }
        _internal_submodules[name] = replacement;
    }
}
