using System.Globalization;
using System.Text.Json;
using OnnxLora.Core;
using OnnxLora.Core.HuggingFace;
using OnnxLora.Training.Data;
using OnnxLora.Training.Data.Internals;
using OnnxLora.Training.Lora;
using OnnxLora.Training.Models.Bert;
using OnnxLora.Training.Models.Llama;
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
        var targets = options.Targets ?? DefaultTargets(info.Family);
        var lora = new LoraOptions
        {
            TargetModules = targets switch
            {
                ["all-linear"] => LoraTargetModules.AllLinear,
                [var single] when IsRegex(single) => LoraTargetModules.Regex(single),
                _ => LoraTargetModules.Of(targets),
            },
            Rank = options.Rank,
            Alpha = options.Alpha,
            Dropout = options.Dropout,
            UseRsLora = options.UseRsLora,
            UseDora = options.UseDora,
            Seed = options.Seed,
            ModulesToSave = task == TrainingTask.SequenceClassification ? [SequenceClassifier.HeadName] : [],
        };
        if (info.Family == "llama")
        {
            var model = LlamaForCausalLM.FromPretrained(modelDir);
            try
            {
                var report = LoraInjection.Apply(model, lora);
                return new CausalLmTaskModel(model, Manifest(modelDir, "CAUSAL_LM", options, report, null));
            }
            catch
            {
                model.Dispose();
                throw;
            }
        }
        var bert = BertModel.FromPretrained(modelDir);
        var classifier = new SequenceClassifier(bert, numLabels, options.Seed);
        try
        {
            var report = LoraInjection.Apply(classifier, lora);
            return new ClassificationTaskModel(classifier, Manifest(modelDir, "SEQ_CLS", options, report, [SequenceClassifier.HeadName]));
        }
        catch
        {
            classifier.Dispose();
            throw;
        }
    }

    /// <summary>A single target with regex characters is a full-match regex (PEFT's string form); module names never contain them.</summary>
    internal static bool IsRegex(string target) => target.AsSpan().IndexOfAny(@".*+?()[]{}|^$\") >= 0;

    private static AdapterManifest Manifest(string modelDir, string taskType, TrainerOptions options, LoraInjectionReport report, IReadOnlyList<string>? modulesToSave)
    {
        // Saved as a list PEFT matches by name suffix: last name segments, or full paths when a regex chose
        // the modules (so reloading wraps exactly the same ones).
        bool regex = options.Targets is [var single] && IsRegex(single);
        var names = report.Wrapped.Select(w => regex ? w.Path : w.Path[(w.Path.LastIndexOf('.') + 1)..]).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();
        return new AdapterManifest(taskType, modelDir, options.Rank, options.Alpha, options.Dropout, names, options.UseRsLora, options.UseDora, modulesToSave);
    }

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
    private sealed class CausalLmTaskModel(LlamaForCausalLM model, AdapterManifest manifest) : TaskModel
    {
        private readonly IReadOnlyList<(string Key, Parameter Parameter)> _trainable = LoraAdapterState.Entries(model);

        public override TrainingTask Task => TrainingTask.CausalLanguageModeling;

        public override nn.Module Root => model;

        public override IReadOnlyList<(string Key, Parameter Parameter)> Trainable => _trainable;

        public override AdapterManifest Manifest => manifest;

        public override Tensor SummedLoss(Batch batch)
        {
            using var scope = NewDisposeScope();
            var (ids, mask) = Inputs(batch);
            return CausalLmLoss.Summed(model.call(ids, mask), ids, mask).MoveToOuterDisposeScope();
        }
    }

    /// <summary>Sequence classification on BERT: cross-entropy of the head's logits.</summary>
    private sealed class ClassificationTaskModel(SequenceClassifier model, AdapterManifest manifest) : TaskModel
    {
        private readonly IReadOnlyList<(string Key, Parameter Parameter)> _trainable = LoraAdapterState.Entries(model);

        public override TrainingTask Task => TrainingTask.SequenceClassification;

        public override nn.Module Root => model;

        public override IReadOnlyList<(string Key, Parameter Parameter)> Trainable => _trainable;

        public override AdapterManifest Manifest => manifest;

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
    }
}
