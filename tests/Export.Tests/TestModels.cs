using System.Reflection;
using OnnxLora.Core.Peft;
using OnnxLora.Models;
using OnnxLora.Models.Bert;
using OnnxLora.Models.Llama;
using OnnxLora.Models.Lora;
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
    /// Injects LoRA (the models helper's <see cref="LoraInjection"/>, PEFT target names) and then draws
    /// B (and, for embeddings, A; for DoRA, a scaled magnitude) at random, so ΔW ≠ 0.
    /// </summary>
    public static int InjectLora(nn.Module model, IReadOnlyCollection<string> targets, int rank = 4, double alpha = 8, bool dora = false, long seed = 5)
    {
        var report = LoraInjection.Apply(model, new PeftAdapterConfig
        {
            TargetModules = TargetModules.FromList(targets),
            R = rank,
            Alpha = alpha,
            UseDora = dora,
        }, seed);
        using var generator = new Generator((ulong)seed + 1);
        using (no_grad())
        {
            foreach (var (_, layer) in LoraInjection.LoraLayers(model))
            {
                switch (layer)
                {
                    case LoraLinear lora:
                        lora.LoraB.normal_(0, 0.3, generator);
                        lora.Magnitude?.mul_(1.25);
                        break;
                    case LoraEmbedding embedding:
                        embedding.LoraEmbeddingA.normal_(0, 0.3, generator);
                        embedding.LoraEmbeddingB.mul_(0.3);
                        break;
                }
            }
        }
        return report.Wrapped.Count;
    }

    /// <summary>Replaces the (plain Linear) module at <paramref name="path"/> with a DoRA layer with random B and magnitude.</summary>
    public static void InjectLoraDoraInto(nn.Module model, string path)
    {
        int dot = path.LastIndexOf('.');
        var parent = model.named_modules().Single(m => m.name == path[..dot]).module;
        var linear = (TorchSharp.Modules.Linear)parent.named_children().Single(c => c.name == path[(dot + 1)..]).module;
        using var generator = new Generator(99);
        var dora = new LoraLinear(linear, 2, 4, useDora: true, generator: generator);
        using (no_grad())
        {
            dora.LoraB.normal_(0, 0.3, generator);
            dora.Magnitude!.mul_(0.8);
        }
        Replace(parent, path[(dot + 1)..], dora);
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
