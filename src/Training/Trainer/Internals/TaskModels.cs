using System.Globalization;
using System.Text.Json;
using OnnxLora.Core;
using OnnxLora.Core.HuggingFace;
using OnnxLora.Core.Peft;
using OnnxLora.Models.Bert;
using OnnxLora.Models.Llama;
using OnnxLora.Models.Lora;
using OnnxLora.Models.Peft;
using OnnxLora.Training.Data;
using OnnxLora.Training.Data.Internals;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace OnnxLora.Training.TrainerInternals;

/// <summary>What the trainer needs to know about a checkpoint before building its model.</summary>
/// <param name="Family">"llama" (decoders: llama, mistral, qwen2) or "bert".</param>
/// <param name="DefaultTask">Causal LM for decoders, sequence classification for encoders.</param>
/// <param name="VocabSize">config.json vocab_size.</param>
/// <param name="PadId">pad_token_id, else the first eos_token_id, else 0.</param>
/// <param name="NumLabels">Classes named by id2label / num_labels, when the config has them.</param>
internal sealed record ModelInfo(string Family, TrainingTask DefaultTask, int VocabSize, int PadId, int? NumLabels);

/// <summary>Builds the task model (base model + LoRA + loss) for a checkpoint folder.</summary>
internal static class TaskModels
{
    /// <summary>PEFT's default target_modules per family.</summary>
    public static IReadOnlyList<string> DefaultTargets(string family) => family == "bert" ? ["query", "value"] : ["q_proj", "v_proj"];

    public static ModelInfo Inspect(string modelDir)
    {
        var config = HfConfig.Load(modelDir);
        switch (config)
        {
            case LlamaConfig llama:
                int pad = (int)(llama.PadTokenId ?? (llama.EosTokenIds.Count > 0 ? llama.EosTokenIds[0] : 0));
                return new ModelInfo("llama", TrainingTask.CausalLanguageModeling, llama.VocabSize, pad, null);
            case BertConfig bert:
                return new ModelInfo("bert", TrainingTask.SequenceClassification, bert.VocabSize, (int)(bert.PadTokenId ?? 0), LabelCount(bert));
            default:
                throw OnnxLoraException.Invalid(config.SourcePath ?? modelDir, "model_type", $"\"{config.ModelType}\"", "a LLaMA-family or BERT checkpoint");
        }
    }

    public static TaskModel Create(string modelDir, ModelInfo info, TrainingTask task, int numLabels, TrainerOptions options)
    {
        var expected = info.DefaultTask;
        if (task != expected)
        {
            throw OnnxLoraException.InvalidOption("TrainerOptions.Task", $"{task}", $"{expected} for a {info.Family} checkpoint ({modelDir})");
        }
        string taskType = task == TrainingTask.SequenceClassification ? "SEQ_CLS" : "CAUSAL_LM";
        var config = options.Lora with
        {
            TaskType = taskType,
            BaseModelNameOrPath = modelDir,
            TargetModules = options.Lora.TargetModules ?? TargetModules.FromList(DefaultTargets(info.Family)),
            ModulesToSave = task == TrainingTask.SequenceClassification ? [BertForSequenceClassification.HeadName] : null,
        };
        if (info.Family == "llama")
        {
            var model = LlamaForCausalLM.FromPretrained(modelDir);
            try
            {
                model.Model.GradientCheckpointing = options.GradientCheckpointing;
                model.Model.GradientCheckpointingLayers = options.GradientCheckpointingLayers;
                model.Model.GradientCheckpointingGranularity = options.GradientCheckpointingGranularity;
                var report = LoraInjection.Apply(model, config, options.Seed);
                NarrowBase(model, options);
                return new CausalLmTaskModel(model, Saved(report));
            }
            catch
            {
                model.Dispose();
                throw;
            }
        }
        // A BertForSequenceClassification checkpoint brings its head (as transformers' from_pretrained does);
        // on a bare encoder the head starts fresh and is saved whole with the adapter (modules_to_save).
        var classifier = PretrainedModel.BertArchitecture(HfConfig.Load(modelDir)) == BertForSequenceClassification.ArchitectureName
            ? BertForSequenceClassification.FromPretrained(modelDir)
            : new BertForSequenceClassification(BertModel.FromPretrained(modelDir), numLabels, options.Seed);
        try
        {
            if (classifier.NumLabels != numLabels)
            {
                throw OnnxLoraException.Invalid(modelDir, $"the checkpoint's classifier has {classifier.NumLabels} labels, the data or NumLabels {numLabels}; expected the same count.");
            }
            classifier.Bert.Encoder.GradientCheckpointing = options.GradientCheckpointing;
            classifier.Bert.Encoder.GradientCheckpointingLayers = options.GradientCheckpointingLayers;
            classifier.Bert.Encoder.GradientCheckpointingGranularity = options.GradientCheckpointingGranularity;
            var report = LoraInjection.Apply(classifier, config, options.Seed);
            NarrowBase(classifier, options);
            return new ClassificationTaskModel(classifier, Saved(report));
        }
        catch
        {
            classifier.Dispose();
            throw;
        }
    }

    private static void NarrowBase(nn.Module model, TrainerOptions options)
    {
        if (options.BaseDType != DType.F32)
        {
            FrozenBaseWeights.Convert(model, options.BaseDType);
        }
    }

    /// <summary>The config saved with the adapter: the injected one, with "all-linear" resolved to module names as PEFT saves it.</summary>
    private static PeftAdapterConfig Saved(LoraInjectionReport report) => report.Config with { TargetModules = LoraInjection.ResolvedTargets(report) };

    private static int? LabelCount(BertConfig config)
    {
        if (config.ExtraFields.TryGetValue("id2label", out var map) && map.ValueKind == JsonValueKind.Object)
        {
            int count = map.EnumerateObject().Count();
            return count >= 2 ? count : null;
        }
        if (config.ExtraFields.TryGetValue("num_labels", out var n) && n.ValueKind == JsonValueKind.Number && n.TryGetInt32(out int value) && value >= 2)
        {
            return value;
        }
        return null;
    }

    /// <summary>Causal LM on a LLaMA-family decoder: next-token loss over non-padding positions.</summary>
    private sealed class CausalLmTaskModel(LlamaForCausalLM model, PeftAdapterConfig adapterConfig) : TaskModel
    {
        private readonly IReadOnlyList<(string Key, Parameter Parameter)> _trainable = LoraAdapterState.Entries(model);

        public override TrainingTask Task => TrainingTask.CausalLanguageModeling;

        public override nn.Module Root => model;

        public override IReadOnlyList<(string Key, Parameter Parameter)> Trainable => _trainable;

        public override PeftAdapterConfig AdapterConfig => adapterConfig;

        public override Tensor SummedLoss(Batch batch)
        {
            using var scope = NewDisposeScope();
            var (ids, mask) = Inputs(batch);
            return CausalLmLoss.Summed(model.call(ids, mask), ids, mask).MoveToOuterDisposeScope();
        }
    }

    /// <summary>Sequence classification on BERT: cross-entropy of the head's logits.</summary>
    private sealed class ClassificationTaskModel(BertForSequenceClassification model, PeftAdapterConfig adapterConfig) : TaskModel
    {
        private readonly IReadOnlyList<(string Key, Parameter Parameter)> _trainable = LoraAdapterState.Entries(model);

        public override TrainingTask Task => TrainingTask.SequenceClassification;

        public override nn.Module Root => model;

        public override IReadOnlyList<(string Key, Parameter Parameter)> Trainable => _trainable;

        public override PeftAdapterConfig AdapterConfig => adapterConfig;

        public override Tensor SummedLoss(Batch batch)
        {
            using var scope = NewDisposeScope();
            var (ids, mask) = Inputs(batch);
            var labels = tensor(batch.Labels!, ScalarType.Int64);
            var logits = model.call(ids, mask);
            if (batch.Labels!.Any(l => l >= logits.shape[1]))
            {
                throw OnnxLoraException.Invalid("", string.Create(CultureInfo.InvariantCulture, $"a label is outside the head's {logits.shape[1]} classes; expected labels 0..{logits.shape[1] - 1} (see NumLabels)."));
            }
            return nn.functional.cross_entropy(logits, labels, reduction: nn.Reduction.Sum).MoveToOuterDisposeScope();
        }

        public override long? CountCorrect(Batch batch)
        {
            using var scope = NewDisposeScope();
            var (ids, mask) = Inputs(batch);
            var predicted = model.call(ids, mask).argmax(1);
            return predicted.eq(tensor(batch.Labels!, ScalarType.Int64)).sum().item<long>();
        }
    }
}
