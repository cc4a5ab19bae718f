namespace OnnxLora.Training.Sample;

/// <summary>
/// How <see cref="SampleGenerator"/> builds the sample checkpoint. The defaults make the committed
/// models/tiny-llama (about 3 MB, pretrained in a few minutes on two cores).
/// </summary>
public sealed record SampleOptions
{
    /// <summary>Seeds the text, the weights' initialization and the pretraining order. Default 1234.</summary>
    public int Seed { get; init; } = SampleGenerator.DefaultSeed;

    /// <summary>Model width. Default 128.</summary>
    public int HiddenSize { get; init; } = 128;

    /// <summary>MLP width. Default 344.</summary>
    public int IntermediateSize { get; init; } = 344;

    /// <summary>Decoder layers. Default 4.</summary>
    public int Layers { get; init; } = 4;

    /// <summary>Attention heads. Default 4.</summary>
    public int Heads { get; init; } = 4;

    /// <summary>Key/value heads (grouped-query attention). Default 2.</summary>
    public int KeyValueHeads { get; init; } = 2;

    /// <summary>Upper bound on the BPE vocabulary (4 special tokens + 256 bytes + merges). Default 512.</summary>
    public int MaxVocabSize { get; init; } = 512;

    /// <summary>Sentences in the pretraining corpus. Default 800.</summary>
    public int CorpusSentences { get; init; } = 800;

    /// <summary>Lines of task.jsonl. Default 400.</summary>
    public int TaskLines { get; init; } = 400;

    /// <summary>Pretraining optimizer steps. Default 600.</summary>
    public int PretrainSteps { get; init; } = 600;

    /// <summary>Sentences per pretraining step. Default 32.</summary>
    public int PretrainBatchSize { get; init; } = 32;

    /// <summary>Peak pretraining learning rate (AdamW, warm-up then cosine). Default 3e-3.</summary>
    public double PretrainLearningRate { get; init; } = 3e-3;

    /// <summary>Checks every value; throws a bad-input <see cref="Core.OnnxLoraException"/> naming the option.</summary>
    public void Validate()
    {
        void Require(bool ok, string name, object value, string expected)
        {
            if (!ok)
            {
                throw Core.OnnxLoraException.InvalidOption($"SampleOptions.{name}", string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{value}"), expected);
            }
        }
        Require(HiddenSize > 0 && Heads > 0 && HiddenSize % Heads == 0, nameof(HiddenSize), HiddenSize, "a positive multiple of Heads");
        Require(KeyValueHeads > 0 && Heads % KeyValueHeads == 0, nameof(KeyValueHeads), KeyValueHeads, "a positive divisor of Heads");
        Require(IntermediateSize > 0, nameof(IntermediateSize), IntermediateSize, "a positive integer");
        Require(Layers > 0, nameof(Layers), Layers, "a positive integer");
        Require(MaxVocabSize > 260, nameof(MaxVocabSize), MaxVocabSize, "more than 260 (4 special tokens + 256 bytes)");
        Require(CorpusSentences > 0, nameof(CorpusSentences), CorpusSentences, "a positive integer");
        Require(TaskLines > 0, nameof(TaskLines), TaskLines, "a positive integer");
        Require(PretrainSteps >= 0, nameof(PretrainSteps), PretrainSteps, "a non-negative integer");
        Require(PretrainBatchSize > 0, nameof(PretrainBatchSize), PretrainBatchSize, "a positive integer");
        Require(PretrainLearningRate > 0 && double.IsFinite(PretrainLearningRate), nameof(PretrainLearningRate), PretrainLearningRate, "a positive finite number");
    }
}
