namespace OnnxLora.Training.Data;

/// <summary>What a training run learns, which decides what a data line must hold.</summary>
public enum TrainingTask
{
    /// <summary>Next-token prediction on decoder models; lines hold "text" or "input_ids".</summary>
    CausalLanguageModeling,

    /// <summary>Sequence classification on encoder models; lines also hold an integer "label".</summary>
    SequenceClassification,
}
