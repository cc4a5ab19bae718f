using System.Text;
using OnnxLora.Models;
using OnnxLora.Models.Bert;
using OnnxLora.Models.Llama;

namespace OnnxLora.Training.Tests;

/// <summary>Tiny checkpoints and data files for trainer tests (vocab 64, hidden 32, 2 layers).</summary>
internal static class TrainerFixtures
{
    /// <summary>
    /// A random tiny LLaMA checkpoint (GQA, untied) in <paramref name="dir"/>. Weights are drawn with
    /// std 0.25 rather than 0.02: with hidden 32 and a frozen lm_head of std 0.02 the logits could not
    /// move more than about ±0.6, so no adapter could make a confident prediction.
    /// </summary>
    public static string Llama(string dir, long seed = 3)
    {
        using var model = LlamaForCausalLM.CreateRandom(TinyConfigs.Llama(), seed, std: 0.25);
        model.SaveCheckpoint(dir);
        return dir;
    }

    /// <summary>A random tiny BERT checkpoint with a pooler in <paramref name="dir"/>.</summary>
    public static string Bert(string dir, long seed = 4)
    {
        using var model = BertModel.CreateRandom(TinyConfigs.Bert(), seed);
        model.SaveCheckpoint(dir);
        return dir;
    }

    /// <summary>
    /// Toy causal-LM data: BOS (1), then the cycle 5 → 9 → 13 → 5 … from a varying start, with varying
    /// lengths so batches get padding. The next token is fixed by the current one, so a model that
    /// learns the cycle drives the loss from ln(64) towards 0.
    /// </summary>
    public static string CountingData(string path, int lines = 48)
    {
        int[] cycle = [5, 9, 13];
        var sb = new StringBuilder();
        for (int i = 0; i < lines; i++)
        {
            int length = 6 + i % 5;
            var ids = new List<int> { 1 };
            for (int k = 0; k < length; k++)
            {
                ids.Add(cycle[(i + k) % cycle.Length]);
            }
            sb.Append("{\"input_ids\": [").Append(string.Join(", ", ids)).Append("]}\n");
        }
        File.WriteAllText(path, sb.ToString());
        return path;
    }

    /// <summary>Classification lines: [CLS]=2, tokens, [SEP]=3; label 1 when the tokens come from [4, 20), 0 when from [40, 60).</summary>
    public static string ClassificationData(string path, int lines = 64)
    {
        var sb = new StringBuilder();
        for (int i = 0; i < lines; i++)
        {
            int label = i % 2;
            int low = label == 1 ? 4 : 40;
            int length = 3 + i % 4;
            var ids = new List<int> { 2 };
            for (int k = 0; k < length; k++)
            {
                ids.Add(low + (i * 7 + k * 5) % 16);
            }
            ids.Add(3);
            sb.Append("{\"input_ids\": [").Append(string.Join(", ", ids)).Append("], \"label\": ").Append(label).Append("}\n");
        }
        File.WriteAllText(path, sb.ToString());
        return path;
    }
}
