using System.Reflection;
using OnnxLora.Training.Lora;
using OnnxLora.Training.Models;
using OnnxLora.Training.Models.Bert;
using OnnxLora.Training.Models.Llama;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace OnnxLora.Export.Tests;

/// <summary>Random tiny models (the models helper's <see cref="TinyConfigs"/>), LoRA injection and eager runs for the export tests.</summary>
internal static class TestModels
{
    public static readonly string[] LlamaTargets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

    public static readonly string[] BertTargets = ["query", "key", "value", "dense"];

    public static LlamaForCausalLM Llama(Core.HuggingFace.LlamaConfig? config = null, long seed = 11)
    {
        var model = LlamaForCausalLM.CreateRandom(config ?? TinyConfigs.Llama(), seed, std: 0.2);
        model.eval();
        return model;
    }

    public static BertModel Bert(long seed = 12)
    {
        var model = BertModel.CreateRandom(TinyConfigs.Bert(), seed, std: 0.2);
        model.eval();
        return model;
    }

    /// <summary>
    /// Wraps every Linear child named in <paramref name="targets"/> (and Embedding children named there)
    /// in a LoRA layer whose B (and A for embeddings, and the DoRA magnitude) are random, so ΔW ≠ 0.
    /// </summary>
    public static int InjectLora(nn.Module model, IReadOnlyCollection<string> targets, int rank = 4, double alpha = 8, bool dora = false, long seed = 5)
    {
        var generator = new Generator((ulong)seed);
        int count = 0;
        var parents = model.named_modules().Select(m => m.module).Prepend(model).Distinct().ToList();
        foreach (var parent in parents)
        {
            var replace = parent.GetType().GetInterfaces().FirstOrDefault(i => i.Name == "IChildReplaceable")?.GetMethod("ReplaceChild");
            if (replace is null)
            {
                continue;
            }
            foreach (var (name, child) in parent.named_children().ToList())
            {
                if (!targets.Contains(name))
                {
                    continue;
                }
                nn.Module<Tensor, Tensor> wrapper;
                using (no_grad())
                {
                    switch (child)
                    {
                        case Linear linear:
                            var lora = new LoraLinear(linear, rank, alpha, useDora: dora, generator: generator);
                            lora.LoraB.normal_(0, 0.3, generator);
                            lora.Magnitude?.mul_(1.25);
                            wrapper = lora;
                            break;
                        case Embedding embedding:
                            var loraEmbedding = new LoraEmbedding(embedding, rank, alpha, generator: generator);
                            loraEmbedding.LoraEmbeddingA.normal_(0, 0.3, generator);
                            loraEmbedding.LoraEmbeddingB.mul_(0.3);
                            wrapper = loraEmbedding;
                            break;
                        default:
                            continue;
                    }
                }
                replace.Invoke(parent, [name, wrapper]);
                count++;
            }
        }
        return count;
    }

    /// <summary>Replaces the child <paramref name="name"/> of <paramref name="parent"/> (through the model's internal replacement hook).</summary>
    public static void Replace(nn.Module parent, string name, nn.Module<Tensor, Tensor> replacement)
    {
        var replace = parent.GetType().GetInterfaces().First(i => i.Name == "IChildReplaceable").GetMethod("ReplaceChild")!;
        try
        {
            replace.Invoke(parent, [name, replacement]);
        }
        catch (TargetInvocationException e) when (e.InnerException is not null)
        {
            throw e.InnerException;
        }
    }

    /// <summary>Turns the adapters of every LoRA layer on or off.</summary>
    public static void SetAdapters(nn.Module model, bool enabled)
    {
        foreach (var (_, module) in model.named_modules())
        {
            switch (module)
            {
                case LoraLinear l: l.AdapterEnabled = enabled; break;
                case LoraEmbedding e: e.AdapterEnabled = enabled; break;
            }
        }
    }

    /// <summary>Eager TorchSharp output (fp32, flattened) for ids/mask [batch, seq].</summary>
    public static float[] Eager(nn.Module<Tensor, Tensor?, Tensor> model, long[] ids, long[] mask, int batch, int seq)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var output = model.call(tensor(ids, [batch, seq]), tensor(mask, [batch, seq]));
        return output.to(ScalarType.Float32).contiguous().data<float>().ToArray();
    }

    /// <summary>Random token ids in [1, vocab).</summary>
    public static long[] Ids(int batch, int seq, long vocab, int seed)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, batch * seq).Select(_ => (long)random.Next(1, (int)vocab)).ToArray();
    }

    public static long[] Ones(int batch, int seq) => Enumerable.Repeat(1L, batch * seq).ToArray();

    /// <summary>A padded mask [2, seq]: row 0 right-padded by 2, row 1 left-padded by 3.</summary>
    public static long[] PaddedMask(int seq)
    {
        var mask = new long[2 * seq];
        for (int j = 0; j < seq; j++)
        {
            mask[j] = j < seq - 2 ? 1 : 0;
            mask[seq + j] = j >= 3 ? 1 : 0;
        }
        return mask;
    }
}
