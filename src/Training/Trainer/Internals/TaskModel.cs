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

    /// <summary>What adapter_config.json records about the adapter.</summary>
    public abstract AdapterManifest Manifest { get; }

    /// <summary>
    /// The loss summed over the batch's targets (predicted tokens for causal LM, examples for
    /// classification), as a scalar; the caller divides by the target count of the whole step.
    /// </summary>
    public abstract Tensor SummedLoss(Batch batch);

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

/// <summary>The facts adapter_config.json records, independent of how the file is written.</summary>
/// <param name="PeftTaskType">"CAUSAL_LM" or "SEQ_CLS".</param>
/// <param name="BaseModelPath">The base checkpoint folder (base_model_name_or_path).</param>
/// <param name="Rank">r.</param>
/// <param name="Alpha">lora_alpha.</param>
/// <param name="Dropout">lora_dropout.</param>
/// <param name="TargetModules">target_modules.</param>
/// <param name="UseRsLora">use_rslora.</param>
/// <param name="UseDora">use_dora.</param>
/// <param name="ModulesToSave">modules_to_save (the classification head), or null.</param>
internal sealed record AdapterManifest(
    string PeftTaskType,
    string BaseModelPath,
    int Rank,
    double Alpha,
    double Dropout,
    IReadOnlyList<string> TargetModules,
    bool UseRsLora,
    bool UseDora,
    IReadOnlyList<string>? ModulesToSave);
