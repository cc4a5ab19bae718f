using OnnxLora.Core;
using OnnxLora.Core.HuggingFace;
using OnnxLora.Core.Safetensors;
using OnnxLora.Models.Internals;
using OnnxLora.Models.Onnx;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace OnnxLora.Models.Bert;

/// <summary>
/// Hugging Face's <c>BertForSequenceClassification</c>: <c>bert</c> (the encoder), <c>dropout</c> and
/// <c>classifier</c> (Linear hidden → num_labels) on the pooled [CLS] state — the pooler's
/// tanh(dense(h[CLS])) when the checkpoint has a pooler, h[CLS] itself otherwise. Parameter names are
/// Hugging Face's (<c>bert.…</c>, <c>classifier.{weight,bias}</c>), so a PEFT SEQ_CLS adapter's keys are
/// <c>base_model.model.bert.…</c> and its head <c>base_model.model.classifier.*</c> (modules_to_save).
/// </summary>
public sealed partial class BertForSequenceClassification : nn.Module<Tensor, Tensor?, Tensor>
{
    /// <summary>The Hugging Face architecture name (config.json <c>architectures</c>).</summary>
    public const string ArchitectureName = "BertForSequenceClassification";

    /// <summary>The head's module name: what PEFT's SEQ_CLS task lists in modules_to_save.</summary>
    public const string HeadName = "classifier";

    /// <summary>A new head on <paramref name="bert"/> (which it then owns): weight N(0, 0.02²) from a generator seeded with <paramref name="seed"/>, bias 0.</summary>
    public BertForSequenceClassification(BertModel bert, int numLabels, long seed) : base(nameof(BertForSequenceClassification))
    {
        ArgumentNullException.ThrowIfNull(bert);
        ArgumentOutOfRangeException.ThrowIfLessThan(numLabels, 1);
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

    /// <summary>The number of classes (rows of the classifier).</summary>
    public int NumLabels => (int)Classifier.weight!.shape[0];

    /// <summary>Logits [batch, num_labels] with all tokens of segment type 0.</summary>
    public override Tensor forward(Tensor inputIds, Tensor? attentionMask) => forward(inputIds, attentionMask, null);

    /// <summary>Logits [batch, num_labels]; <paramref name="tokenTypeIds"/> as in <see cref="BertModel.forward(Tensor, Tensor?, Tensor?)"/>.</summary>
    public Tensor forward(Tensor inputIds, Tensor? attentionMask, Tensor? tokenTypeIds)
    {
        using var scope = NewDisposeScope();
        var hidden = Bert.forward(inputIds, attentionMask, tokenTypeIds);
        var pooled = Bert.Pooler is null ? hidden.select(1, 0) : Bert.Pool(hidden);
        return Classifier.call(Dropout.call(pooled)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Loads a <c>BertForSequenceClassification</c> checkpoint: the encoder under <c>bert.</c> (as
    /// <see cref="BertModel.FromPretrained"/> reads it) and <c>classifier.weight</c> [num_labels, hidden] /
    /// <c>classifier.bias</c>.
    /// </summary>
    /// <exception cref="OnnxLoraException">Bad input: the config is not BERT, or the weights do not match it (the head included).</exception>
    public static BertForSequenceClassification FromPretrained(string directory)
    {
        var config = BertConfig.Load(directory);
        using var checkpoint = SafetensorsCheckpoint.Open(directory);
        return FromCheckpoint(config, checkpoint, weights: null);
    }

    /// <summary>As <see cref="BertModel"/>'s: weights copied in, or recorded in <paramref name="weights"/> for a meta-device encoder (the small head stays on the CPU).</summary>
    internal static BertForSequenceClassification FromCheckpoint(BertConfig config, SafetensorsCheckpoint checkpoint, OnnxWeightStore? weights)
    {
        var weight = checkpoint.Tensors.FirstOrDefault(t => t.Name == HeadName + ".weight")
            ?? throw ModelThrow.Invalid(checkpoint.Directory, $"tensor '{HeadName}.weight'", "missing",
                $"the classification head of a {ArchitectureName} checkpoint (config.json architectures says {ArchitectureName})");
        if (weight.Shape.Count != 2 || weight.Shape[1] != config.HiddenSize || weight.Shape[0] is < 1 or > int.MaxValue)
        {
            throw ModelThrow.Invalid(checkpoint.Directory, $"tensor '{HeadName}.weight'", $"shape {ModelThrow.Shape(weight.Shape)}", $"[num_labels, {config.HiddenSize}]");
        }
        int numLabels = (int)weight.Shape[0];
        // The encoder's parameters are named under "bert." here (the HF class's names), as the emission names them.
        var encoderWeights = weights is null ? null : new OnnxWeightStore();
        var bert = BertModel.FromCheckpoint(config, checkpoint, encoderWeights);
        weights?.AddPrefixed("bert.", encoderWeights!);
        var model = new BertForSequenceClassification(bert, numLabels, seed: 0);
        try
        {
            var head = new List<ParameterSpec> { new(HeadName + ".weight", [numLabels, config.HiddenSize]), new(HeadName + ".bias", [numLabels]) };
            var sources = CheckpointIO.Match(checkpoint, head, name => name.StartsWith(HeadName + ".", StringComparison.Ordinal) ? name : null, ArchitectureName);
            if (weights is not null)
            {
                CheckpointIO.Register(weights, sources);
            }
            else
            {
                CheckpointIO.Copy(model, sources);
            }
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Writes config.json (architectures <c>BertForSequenceClassification</c>, num_labels) and model.safetensors
    /// (<c>bert.…</c> and <c>classifier.*</c>, Hugging Face's names) into <paramref name="directory"/>.
    /// </summary>
    /// <exception cref="OnnxLoraException">Bad input: an output file exists and <paramref name="overwrite"/> is false.</exception>
    public void SaveCheckpoint(string directory, DType dtype = DType.F32, bool overwrite = false)
    {
        var layout = BertModel.Layout(Bert.Config, Bert.Pooler is not null).Select(s => s with { Name = "bert." + s.Name }).ToList();
        layout.Add(new(HeadName + ".weight", [NumLabels, Bert.Config.HiddenSize]));
        layout.Add(new(HeadName + ".bias", [NumLabels]));
        // Hugging Face's PretrainedConfig saves the label count as id2label / label2id ("LABEL_i" by default).
        string labels = string.Join(", ", Enumerable.Range(0, NumLabels).Select(i => $"\"{i}\": \"LABEL_{i}\""));
        string ids = string.Join(", ", Enumerable.Range(0, NumLabels).Select(i => $"\"LABEL_{i}\": {i}"));
        var extra = new Dictionary<string, System.Text.Json.JsonElement>(Bert.Config.ExtraFields, StringComparer.Ordinal)
        {
            ["id2label"] = JsonElementOf("{" + labels + "}"),
            ["label2id"] = JsonElementOf("{" + ids + "}"),
        };
        var config = Bert.Config with { Architectures = [ArchitectureName], ExtraFields = extra };
        CheckpointIO.Save(directory, config, CheckpointIO.BaseTensors(this, layout), dtype, overwrite);
    }

    private static System.Text.Json.JsonElement JsonElementOf(string json)
    {
        using var document = System.Text.Json.JsonDocument.Parse(json);
        return document.RootElement.Clone();
    }
}
