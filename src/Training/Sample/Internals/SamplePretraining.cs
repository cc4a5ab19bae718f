using System.Globalization;
using OnnxLora.Models.Llama;
using OnnxLora.Training.Data;
using OnnxLora.Training.Data.Internals;
using OnnxLora.Training.TrainerInternals;
using static TorchSharp.torch;

namespace OnnxLora.Training.Sample.Internals;

/// <summary>
/// Brief full-parameter pretraining of the sample model on its corpus: AdamW (PyTorch defaults,
/// weight decay 0.01), warm-up then cosine, gradient clipping at 1, sentences in a seeded order.
/// Uses no global random state, so the result depends only on the options (and the machine's
/// floating-point behaviour).
/// </summary>
internal static class SamplePretraining
{
    /// <summary>Longest sequence the sample is made for (max_position_embeddings).</summary>
    public const int MaxLength = 64;

    public static void Run(LlamaForCausalLM model, IReadOnlyList<int[]> sequences, SampleOptions options, IProgress<string>? log)
    {
        if (options.PretrainSteps == 0)
        {
            return;
        }
        model.train();
        var parameters = model.parameters().ToList();
        using var optimizer = TrainerOptimizer.Create(parameters, new TrainerOptions { LearningRate = options.PretrainLearningRate });
        int warmup = Math.Min(50, options.PretrainSteps / 10);
        var rng = new DeterministicRandom(options.Seed, 17);
        var order = Enumerable.Range(0, sequences.Count).ToArray();
        int position = order.Length;
        double recent = 0;
        for (int step = 0; step < options.PretrainSteps; step++)
        {
            TrainerOptimizer.SetLearningRate(optimizer, options.PretrainLearningRate * LearningRateSchedule.Factor(step, warmup, options.PretrainSteps));
            var examples = new List<TrainingExample>(options.PretrainBatchSize);
            while (examples.Count < options.PretrainBatchSize)
            {
                if (position == order.Length)
                {
                    rng.Shuffle(order);
                    position = 0;
                }
                examples.Add(new TrainingExample(sequences[order[position++]]));
            }
            var batch = Batching.Collate(examples, SampleTokenizerFiles.PadId);
            using (var scope = NewDisposeScope())
            {
                var ids = tensor(batch.InputIds, [batch.Rows, batch.Columns], ScalarType.Int64);
                var mask = tensor(batch.AttentionMask, [batch.Rows, batch.Columns], ScalarType.Int64);
                var summed = CausalLmLoss.Summed(model.call(ids, mask), ids, mask);
                var loss = summed / batch.PredictedTokens;
                loss.backward();
                nn.utils.clip_grad_norm_(parameters, 1.0);
                optimizer.step();
                optimizer.zero_grad();
                recent += loss.item<float>();
            }
            if ((step + 1) % 50 == 0 || step + 1 == options.PretrainSteps)
            {
                int span = (step + 1) % 50 == 0 ? 50 : (step + 1) % 50;
                log?.Report(string.Create(CultureInfo.InvariantCulture, $"pretraining step {step + 1}/{options.PretrainSteps}: loss {recent / span:F4}"));
                recent = 0;
            }
        }
        model.eval();
    }
}
