using System.Diagnostics;
using System.Globalization;
using OnnxLora.Core;
using OnnxLora.Core.IO;
using OnnxLora.Models;
using OnnxLora.Training.Data;
using OnnxLora.Training.Data.Internals;
using OnnxLora.Training.TrainerInternals;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace OnnxLora.Training;

/// <summary>
/// Trains a LoRA adapter on a Hugging Face checkpoint and writes it as a PEFT adapter folder.
/// Decoder checkpoints (LLaMA family) learn next-token prediction; encoder checkpoints (BERT) learn
/// sequence classification with a small head saved as a modules_to_save module ("classifier").
/// </summary>
/// <remarks>
/// Only adapter parameters (and the classification head) reach the optimizer; base weights stay
/// bit-identical. A fixed seed gives the same adapter bytes on the same machine, and a run resumed
/// from a checkpoint ends with the same bytes as an uninterrupted one. Runs are serialized within a
/// process because they seed torch's global generator (which LoRA dropout draws from).
/// </remarks>
public static class Trainer
{
    private static readonly Lock RunLock = new();

    /// <summary>Trains and writes <paramref name="outAdapterDir"/> (adapter_config.json + adapter_model.safetensors), atomically.</summary>
    /// <param name="modelDir">A Hugging Face checkpoint folder (config.json, safetensors weights, optionally tokenizer.json).</param>
    /// <param name="dataFile">A JSON Lines data file (see <see cref="JsonlDataset"/>).</param>
    /// <param name="outAdapterDir">The adapter folder to create; it appears only when training completes.</param>
    /// <param name="options">Run settings.</param>
    /// <param name="progress">Receives a report after each optimizer step and each evaluation.</param>
    /// <param name="cancellationToken">Stops between micro-batches; nothing is written under <paramref name="outAdapterDir"/> then.</param>
    /// <exception cref="OnnxLoraException">Bad input: an option is invalid or does not match the checkpoint being resumed; the model
    /// folder, data file, config.json or weights are missing; the checkpoint, tokenizer or data is malformed (the message names the
    /// file); the output exists and <see cref="TrainerOptions.Overwrite"/> is false; or training diverged.</exception>
    /// <exception cref="OperationCanceledException">The token was cancelled.</exception>
    public static TrainingResult Train(string modelDir, string dataFile, string outAdapterDir, TrainerOptions options,
        IProgress<TrainingProgress>? progress = null, CancellationToken cancellationToken = default) =>
        Train(modelDir, dataFile, outAdapterDir, options, progress, cancellationToken, hooks: null);

    /// <summary><see cref="Train(string, string, string, TrainerOptions, IProgress{TrainingProgress}?, CancellationToken)"/> with observation points for tests and benchmarks.</summary>
    internal static TrainingResult Train(string modelDir, string dataFile, string outAdapterDir, TrainerOptions options,
        IProgress<TrainingProgress>? progress, CancellationToken cancellationToken, TrainerHooks? hooks)
    {
        ArgumentNullException.ThrowIfNull(modelDir);
        ArgumentNullException.ThrowIfNull(dataFile);
        ArgumentNullException.ThrowIfNull(outAdapterDir);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        modelDir = Path.GetFullPath(modelDir);
        if (!Directory.Exists(modelDir))
        {
            throw OnnxLoraException.NotFound("model folder", modelDir);
        }
        AtomicDirectory.CheckDestination(outAdapterDir, options.Overwrite);
        if (options.GradientCheckpointing)
        {
            // Memory over speed, as checkpointing itself: freed activation buffers go back to the system instead of staying in
            // glibc's heap (see NativeHeap). Peak RSS 3.01 → 1.87 GB at hidden 1024 / 16 layers / seq 1024, for about 1.3× the
            // CPU time of a checkpointed step (page faults on fresh mappings); left at glibc's default otherwise. Process-wide.
            NativeHeap.UseFixedMmapThreshold();
            // Those fresh mappings fault in 2 MiB at a time instead of 4 KiB (−13 % CPU per checkpointed step, same peak);
            // effective when this run allocates the process's first torch tensor, as the CLI's does.
            NativeHeap.UseHugePagesForTorchBuffers();
        }
        lock (RunLock)
        {
            int threads = get_num_threads();
            if (options.Threads is int n)
            {
                set_num_threads(n);
            }
            try
            {
                return Run(modelDir, Path.GetFullPath(dataFile), Path.GetFullPath(outAdapterDir), options, progress, cancellationToken, hooks);
            }
            finally
            {
                set_num_threads(threads);
            }
        }
    }

    private static TrainingResult Run(string modelDir, string dataFile, string outDir, TrainerOptions options,
        IProgress<TrainingProgress>? progress, CancellationToken ct, TrainerHooks? hooks)
    {
        var clock = Stopwatch.StartNew();
        var info = TaskModels.Inspect(modelDir);
        var task = options.Task ?? info.DefaultTask;
        var tokenizer = CheckpointTokenizer.Exists(modelDir) ? CheckpointTokenizer.Load(modelDir) : null;
        int? numLabels = task == TrainingTask.SequenceClassification ? options.NumLabels ?? info.NumLabels : null;
        var examples = JsonlDataset.Read(dataFile, task, tokenizer, info.VocabSize, options.MaxLength, numLabels);
        if (task == TrainingTask.SequenceClassification && numLabels is null)
        {
            numLabels = Math.Max(2, examples.Max(e => e.Label!.Value) + 1);
        }
        var (train, eval) = Batching.Split(examples, options.EvalFraction, options.Seed);
        var plan = new StepPlan(train.Count, options);

        random.manual_seed(options.Seed);
        using var model = TaskModels.Create(modelDir, info, task, numLabels ?? 0, options);
        var trainable = model.Trainable;
        using var optimizer = TrainerOptimizer.Create(trainable.Select(t => t.Parameter), options);

        int startStep = 0;
        var lossHistory = new List<double>();
        var identity = new TrainerState
        {
            TotalSteps = plan.TotalSteps,
            Seed = options.Seed,
            BatchSize = options.BatchSize,
            GradientAccumulation = options.GradientAccumulation,
            TrainExamples = train.Count,
            EvalExamples = eval.Count,
            Rank = options.Lora.R,
            Alpha = options.Lora.Alpha,
            LearningRate = options.LearningRate,
            WarmupSteps = options.WarmupSteps,
            TargetModules = model.AdapterConfig.TargetModules!.ToString(),
            BaseDType = options.BaseDType.ToString(),
        };
        if (options.ResumeFrom is not null)
        {
            var saved = TrainerCheckpoint.ReadState(options.ResumeFrom);
            CheckResumable(options.ResumeFrom, saved, identity);
            TrainerCheckpoint.LoadInto(options.ResumeFrom, model, optimizer);
            TorchRng.Restore(saved.RngState);
            startStep = saved.Step;
            lossHistory.AddRange(saved.LossHistory);
        }
        int firstNewLoss = lossHistory.Count;
        hooks?.Started?.Invoke(model, optimizer);

        EvalScore? initialEval = eval.Count > 0 ? Evaluate(model, eval, options.BatchSize, info.PadId, ct) : null;
        progress?.Report(new TrainingProgress(startStep, plan.TotalSteps, plan.EpochAt(startStep), double.NaN,
            LearningRateAt(options, startStep, plan.TotalSteps), 0, 0, initialEval?.Loss, clock.Elapsed)
        { EvalAccuracy = initialEval?.Accuracy });

        model.Root.train();
        long runTokens = 0;
        double runSeconds = 0;
        EvalScore? lastEval = initialEval;
        for (int step = startStep; step < plan.TotalSteps; step++)
        {
            ct.ThrowIfCancellationRequested();
            long t0 = Stopwatch.GetTimestamp();
            double lr = LearningRateAt(options, step, plan.TotalSteps);
            TrainerOptimizer.SetLearningRate(optimizer, lr);
            var batches = plan.MicroBatches(step).Select(ix => Batching.Collate(ix.Select(i => train[i]).ToList(), info.PadId)).ToList();
            long targets = batches.Sum(model.CountTargets);
            double lossSum = 0;
            long tokens = 0;
            foreach (var batch in batches)
            {
                ct.ThrowIfCancellationRequested();
                using var scope = NewDisposeScope();
                var summed = model.SummedLoss(batch);
                (summed / Math.Max(1, targets)).backward();
                lossSum += summed.item<float>();
                tokens += batch.Tokens;
            }
            double gradNorm;
            using (var scope = NewDisposeScope())
            {
                // One scope for the update: TorchSharp's clip, step and zero_grad create tensor
                // wrappers (of the gradients) that would otherwise live until a GC finalizes them.
                gradNorm = ClipGradients(trainable, options.MaxGradNorm);
                optimizer.step();
                optimizer.zero_grad();
            }
            double loss = lossSum / Math.Max(1, targets);
            if (!double.IsFinite(loss))
            {
                throw OnnxLoraException.InvalidOption("LearningRate", string.Create(CultureInfo.InvariantCulture,
                    $"training diverged at step {step + 1}: loss is {loss}; lower LearningRate ({options.LearningRate}) or set MaxGradNorm."));
            }
            lossHistory.Add(loss);
            double seconds = Stopwatch.GetElapsedTime(t0).TotalSeconds;
            runTokens += tokens;
            runSeconds += seconds;
            int done = step + 1;
            EvalScore? evalScore = null;
            if (eval.Count > 0 && options.EvalEverySteps > 0 && done % options.EvalEverySteps == 0 && done < plan.TotalSteps)
            {
                evalScore = lastEval = Evaluate(model, eval, options.BatchSize, info.PadId, ct);
            }
            progress?.Report(new TrainingProgress(done, plan.TotalSteps, plan.EpochAt(done), loss, lr,
                seconds > 0 ? tokens / seconds : 0, gradNorm, evalScore?.Loss, clock.Elapsed)
            { EvalAccuracy = evalScore?.Accuracy });
            if (options.CheckpointEverySteps > 0 && done % options.CheckpointEverySteps == 0)
            {
                TrainerCheckpoint.Save(options.CheckpointDirectory!, model, optimizer,
                    identity with { Step = done, RngState = TorchRng.Capture(), LossHistory = [.. lossHistory] });
            }
        }

        if (eval.Count > 0 && plan.TotalSteps > startStep)
        {
            lastEval = Evaluate(model, eval, options.BatchSize, info.PadId, ct);
            progress?.Report(new TrainingProgress(plan.TotalSteps, plan.TotalSteps, plan.EpochAt(plan.TotalSteps), double.NaN,
                LearningRateAt(options, plan.TotalSteps - 1, plan.TotalSteps), 0, 0, lastEval?.Loss, clock.Elapsed)
            { EvalAccuracy = lastEval?.Accuracy });
        }
        ct.ThrowIfCancellationRequested();
        hooks?.Finished?.Invoke(model, optimizer);
        SaveAdapter(outDir, model, options.Overwrite);
        return new TrainingResult(outDir, plan.TotalSteps, lossHistory.Count > 0 ? lossHistory[^1] : double.NaN,
            initialEval?.Loss, lastEval?.Loss, lossHistory.Skip(firstNewLoss).ToList(), runSeconds > 0 ? runTokens / runSeconds : 0,
            model.TrainableParameters, model.TotalParameters, clock.Elapsed)
        {
            InitialEvalAccuracy = initialEval?.Accuracy,
            EvalAccuracy = lastEval?.Accuracy,
        };
    }

    /// <summary>The one place the final adapter is written: a PEFT folder that appears whole or not at all.</summary>
    private static void SaveAdapter(string outDir, TaskModel model, bool overwrite) =>
        AdapterFiles.Save(outDir, model.AdapterConfig, model.Trainable, overwrite);

    private static double LearningRateAt(TrainerOptions options, int step, int total) =>
        options.LearningRate * LearningRateSchedule.Factor(step, options.WarmupSteps, total);

    /// <summary>Clips to <paramref name="maxNorm"/> (when positive) and returns the norm before clipping.</summary>
    private static double ClipGradients(IReadOnlyList<(string Key, Parameter Parameter)> trainable, double maxNorm)
    {
        var parameters = trainable.Select(t => t.Parameter).ToList();
        if (maxNorm > 0)
        {
            return nn.utils.clip_grad_norm_(parameters, maxNorm);
        }
        using var scope = NewDisposeScope();
        double sum = 0;
        foreach (var p in parameters)
        {
            var g = p.grad;
            if (g is not null)
            {
                sum += g.to(ScalarType.Float64).pow(2).sum().item<double>();
            }
        }
        return Math.Sqrt(sum);
    }

    /// <summary>Mean loss over the held-out split (per predicted token or per example), in eval mode; for classification also the accuracy.</summary>
    internal static EvalScore Evaluate(TaskModel model, IReadOnlyList<TrainingExample> eval, int batchSize, int padId, CancellationToken ct)
    {
        bool wasTraining = model.Root.training;
        model.Root.eval();
        try
        {
            using var noGrad = no_grad();
            double sum = 0;
            long targets = 0, correct = 0;
            for (int start = 0; start < eval.Count; start += batchSize)
            {
                ct.ThrowIfCancellationRequested();
                using var scope = NewDisposeScope();
                var batch = Batching.Collate(eval.Skip(start).Take(batchSize).ToList(), padId);
                sum += model.SummedLoss(batch).to(ScalarType.Float64).item<double>();
                targets += model.CountTargets(batch);
                correct += model.CountCorrect(batch) ?? 0;
            }
            double? accuracy = model.Task == TrainingTask.SequenceClassification ? (double)correct / Math.Max(1, targets) : null;
            return new EvalScore(sum / Math.Max(1, targets), accuracy);
        }
        finally
        {
            model.Root.train(wasTraining);
        }
    }

    private static void CheckResumable(string folder, TrainerState saved, TrainerState current)
    {
        foreach (var ((name, found), (_, expected)) in current.Identity().Zip(saved.Identity()))
        {
            if (found != expected)
            {
                throw OnnxLoraException.InvalidOption($"TrainerOptions.{name}", found, $"{expected} as in the checkpoint {Path.GetFullPath(folder)}");
            }
        }
        if (saved.Step < 0 || saved.Step > saved.TotalSteps)
        {
            throw OnnxLoraException.Invalid(Path.Combine(Path.GetFullPath(folder), TrainerCheckpoint.StateFileName), "step", $"{saved.Step}", $"0..{saved.TotalSteps}");
        }
    }
}

/// <summary>One evaluation on the held-out split: mean loss, and for classification the share of examples whose top logit is the label.</summary>
internal readonly record struct EvalScore(double Loss, double? Accuracy);
