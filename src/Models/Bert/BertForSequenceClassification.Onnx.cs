using OnnxLora.Models.Onnx;

namespace OnnxLora.Models.Bert;

/// <summary>ONNX emission: classifier(pooled [CLS] state) → <c>logits</c> [batch, num_labels] (inputs and outputs from <see cref="BertOnnxConfig"/>).</summary>
public sealed partial class BertForSequenceClassification : IOnnxExportableModel
{
    public void EmitOnnxGraph(OnnxEmitContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var inputs = BertOnnxConfig.DeclareInputs(context, Bert.Config);
        var bert = context.Child("bert");
        string pooled = Bert.EmitPooled(bert, Bert.EmitEncoder(bert, inputs));
        // Dropout is the identity at inference.
        string logits = context.Emit(Classifier, HeadName, pooled);
        BertOnnxConfig.DeclareOutput(context, BertOnnxConfig.Logits, logits, "batch", NumLabels);
    }
}
