using TorchSharp.Modules;

namespace OnnxLora.Training.TrainerInternals;

/// <summary>Points where tests and benchmarks may look at a run's model and optimizer.</summary>
/// <param name="Started">After the model, adapter and optimizer are set up (and a resume is loaded), before the first step.</param>
/// <param name="Finished">After the last step and evaluation, before the adapter is written.</param>
internal sealed record TrainerHooks(Action<TaskModel, AdamW>? Started = null, Action<TaskModel, AdamW>? Finished = null);
