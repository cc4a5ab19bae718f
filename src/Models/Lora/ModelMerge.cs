using static TorchSharp.torch;

namespace OnnxLora.Models.Lora;

/// <summary>
/// Folds every LoRA layer of an injected model into its base weight and back, through each layer's
/// <see cref="LoraLayer.Merge"/> / <see cref="LoraLayer.Unmerge"/> (Core's <see cref="Core.Peft.ModuleUpdate"/>:
/// W' = W + s·B·A, E' = E + s·(B·A)ᵀ, DoRA m ⊙ (W + s·B·A)/‖W + s·B·A‖).
/// </summary>
public static class ModelMerge
{
    /// <summary>Merges every LoRA layer not merged yet, so the model computes the same function with plain weights.</summary>
    /// <returns>The paths of the layers merged now.</returns>
    /// <exception cref="InvalidDataException">Safe mode and a merged weight holds NaN/Inf (named); that layer is unchanged.</exception>
    public static IReadOnlyList<string> MergeInPlace(nn.Module model, bool safeMode = true)
    {
        ArgumentNullException.ThrowIfNull(model);
        var done = new List<string>();
        foreach (var (path, layer) in LoraInjection.LoraLayers(model))
        {
            var lora = (LoraLayer)layer;
            if (!lora.Merged)
            {
                lora.Merge(safeMode);
                done.Add(path);
            }
        }
        return done;
    }

    /// <summary>Undoes <see cref="MergeInPlace"/> on every merged layer.</summary>
    /// <returns>The paths of the layers unmerged.</returns>
    public static IReadOnlyList<string> UnmergeInPlace(nn.Module model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var done = new List<string>();
        foreach (var (path, layer) in LoraInjection.LoraLayers(model))
        {
            var lora = (LoraLayer)layer;
            if (lora.Merged)
            {
                lora.Unmerge();
                done.Add(path);
            }
        }
        return done;
    }
}
