using OnnxLora.Training.Data;

namespace OnnxLora.Training.TrainerInternals;

/// <summary>What the trainer needs to know about a checkpoint before building its model.</summary>
/// <param name="DefaultTask">Causal LM for decoders, sequence classification for encoders.</param>
/// <param name="VocabSize">config.json vocab_size.</param>
/// <param name="PadId">pad_token_id, else the first eos_token_id, else 0.</param>
/// <param name="NumLabels">Classes named by id2label / num_labels, when the config has them.</param>
internal sealed record ModelInfo(TrainingTask DefaultTask, int VocabSize, int PadId, int? NumLabels);

/// <summary>Builds the task model (base model + LoRA + loss) for a checkpoint folder.</summary>
internal static partial class TaskModels
{
    public static ModelInfo Inspect(string modelDir) =>
        throw new NotSupportedException($"{modelDir}: model loading arrives with the models branch.");

    public static TaskModel Create(string modelDir, ModelInfo info, TrainingTask task, int numLabels, TrainerOptions options) =>
        throw new NotSupportedException($"{modelDir}: model loading arrives with the models branch.");
}
