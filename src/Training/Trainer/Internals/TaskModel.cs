using OnnxLora.Core.Peft;
using OnnxLora.Training.Data;
using OnnxLora.Training.Data.Internals;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace OnnxLora.Training.TrainerInternals;

/// <summary>
/// A base model with its LoRA layers in place and the loss of one task on top. The trainer only
/// sees this: the parameters it may train (named by the keys PEFT saves them under) and a summed loss.
/// </summary>
internal abstract class TaskModel : IDisposable
{
    /// <summary>The task this model computes the loss of.</summary>
    public abstract TrainingTask Task { get; }

    /// <summary>The module tree (for train/eval mode and parameter counts).</summary>
    public abstract nn.Module Root { get; }

    /// <summary>
    /// The parameters the optimizer updates, in a fixed order, each with the key it has in
    /// adapter_model.safetensors. Every other parameter has requires_grad off.
    /// </summary>
    public abstract IReadOnlyList<(string Key, Parameter Parameter)> Trainable { get; }

    /// <summary>The adapter_config.json this model's adapter is saved with (PEFT's config, the one that was injected).</summary>
    public abstract PeftAdapterConfig AdapterConfig { get; }

    /// <summary>
    /// The loss summed over the batch's targets (predicted tokens for causal LM, examples for
    /// classification), as a scalar; the caller divides by the target count of the whole step.
    /// </summary>
    public abstract Tensor SummedLoss(Batch batch);

    /// <summary>Classification: how many rows of <paramref name="batch"/> have their label as the top logit; null for other tasks.</summary>
    public virtual long? CountCorrect(Batch batch) => null;

    /// <summary>How many targets <see cref="SummedLoss"/> sums over for <paramref name="batch"/>.</summary>
    public long CountTargets(Batch batch) => Task == TrainingTask.CausalLanguageModeling ? batch.PredictedTokens : batch.Rows;

    /// <summary>Number of elements of all parameters.</summary>
    public long TotalParameters => Root.parameters().Sum(p => p.numel());

    /// <summary>Number of elements of the trainable parameters.</summary>
    public long TrainableParameters => Trainable.Sum(p => p.Parameter.numel());

    public void Dispose()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    protected virtual void Dispose(bool disposing)
    {
        if (disposing)
        {
            Root.Dispose();
        }
    }

    /// <summary>Token ids and attention mask of a batch as [rows, columns] int64 tensors.</summary>
    protected static (Tensor Ids, Tensor Mask) Inputs(Batch batch)
    {
        var ids = tensor(batch.InputIds, [batch.Rows, batch.Columns], ScalarType.Int64);
        var mask = tensor(batch.AttentionMask, [batch.Rows, batch.Columns], ScalarType.Int64);
        return (ids, mask);
    }
}
