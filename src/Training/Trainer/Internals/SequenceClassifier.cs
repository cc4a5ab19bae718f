using OnnxLora.Models.Bert;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace OnnxLora.Training.TrainerInternals;

/// <summary>
/// Hugging Face's BertForSequenceClassification layout: <c>bert</c> (the encoder), <c>dropout</c>, and
/// <c>classifier</c> (Linear hidden → labels) on the pooled [CLS] state — the pooler's tanh(dense(h[CLS]))
/// when the checkpoint has a pooler, h[CLS] itself otherwise. With LoRA the adapter keys are then
/// <c>base_model.model.bert.…</c> and the head is saved whole as <c>base_model.model.classifier.{weight,bias}</c>
/// (PEFT's SEQ_CLS modules_to_save), as PEFT writes them for this architecture.
/// </summary>
internal sealed class SequenceClassifier : nn.Module<Tensor, Tensor?, Tensor>
{
    /// <summary>The head's module name (modules_to_save).</summary>
    public const string HeadName = "classifier";

    /// <summary>A head drawn N(0, initializer_range 0.02²) from a generator seeded with <paramref name="seed"/>, bias 0.</summary>
    public SequenceClassifier(BertModel bert, int numLabels, long seed) : base(nameof(SequenceClassifier))
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(numLabels, 2);
        Bert = bert;
        Dropout = nn.Dropout(bert.Config.HiddenDropoutProb);
        Classifier = nn.Linear(bert.Config.HiddenSize, numLabels, hasBias: true);
        using (no_grad())
        using (var generator = new Generator(unchecked((ulong)seed ^ 0x5EC1A55UL)))
        {
            Classifier.weight!.normal_(0, 0.02, generator);
            Classifier.bias!.zero_();
        }
        RegisterComponents();
    }

    [field: ComponentName(Name = "bert")]
    public BertModel Bert { get; }

    [field: ComponentName(Name = "dropout")]
    public Dropout Dropout { get; }

    [field: ComponentName(Name = HeadName)]
    public Linear Classifier { get; }

    /// <summary>Logits [batch, labels].</summary>
    public override Tensor forward(Tensor inputIds, Tensor? attentionMask)
    {
        using var scope = NewDisposeScope();
        var hidden = Bert.call(inputIds, attentionMask);
        var pooled = Bert.Pooler is null ? hidden.select(1, 0) : Bert.Pool(hidden);
        return Classifier.call(Dropout.call(pooled)).MoveToOuterDisposeScope();
    }
}
