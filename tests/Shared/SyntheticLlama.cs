using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using OnnxLora.Core;
using OnnxLora.Core.Peft;
using OnnxLora.Core.Safetensors;

namespace OnnxLora.Testing;

/// <summary>
/// Shared by the tests and benchmarks that need a large LLaMA-shaped checkpoint fast (linked into each): config.json and
/// one model.safetensors of the given shapes, written tensor by tensor, with deterministic values from a linear
/// congruential generator in [-0.035, 0.035) (norm scales around 1); and a LoRA adapter on chosen projections.
/// </summary>
internal static class SyntheticLlama
{
    /// <summary>The seven projections PEFT targets on LLaMA, as (module under the layer, in, out) for <paramref name="shape"/>.</summary>
    public static IEnumerable<(string Module, int In, int Out)> Projections(Shape shape)
    {
        int q = shape.Hidden, kv = shape.KvHeads * (shape.Hidden / shape.Heads);
        yield return ("self_attn.q_proj", shape.Hidden, q);
        yield return ("self_attn.k_proj", shape.Hidden, kv);
        yield return ("self_attn.v_proj", shape.Hidden, kv);
        yield return ("self_attn.o_proj", q, shape.Hidden);
        yield return ("mlp.gate_proj", shape.Hidden, shape.Intermediate);
        yield return ("mlp.up_proj", shape.Hidden, shape.Intermediate);
        yield return ("mlp.down_proj", shape.Intermediate, shape.Hidden);
    }

    /// <summary>Writes config.json and model.safetensors (untied lm_head) into <paramref name="directory"/>.</summary>
    public static void WriteCheckpoint(string directory, Shape shape, DType dtype)
    {
        Directory.CreateDirectory(directory);
        var specs = new List<TensorSpec> { new("model.embed_tokens.weight", dtype, [shape.Vocab, shape.Hidden]) };
        for (int i = 0; i < shape.Layers; i++)
        {
            foreach (var (module, inF, outF) in Projections(shape))
            {
                specs.Add(new($"model.layers.{i}.{module}.weight", dtype, [outF, inF]));
            }
            specs.Add(new($"model.layers.{i}.input_layernorm.weight", dtype, [shape.Hidden]));
            specs.Add(new($"model.layers.{i}.post_attention_layernorm.weight", dtype, [shape.Hidden]));
        }
        specs.Add(new("model.norm.weight", dtype, [shape.Hidden]));
        specs.Add(new("lm_head.weight", dtype, [shape.Vocab, shape.Hidden]));
        uint state = 1;
        using (var writer = SafetensorsWriter.Create(Path.Combine(directory, "model.safetensors"), specs, new Dictionary<string, string> { ["format"] = "pt" }))
        {
            foreach (var spec in specs)
            {
                float[] values = Values(checked((int)spec.ElementCount), ref state, spec.Name.EndsWith("norm.weight", StringComparison.Ordinal) ? 1f : 0f);
                if (dtype == DType.F32)
                {
                    writer.Write(spec.Name, MemoryMarshal.AsBytes(values.AsSpan()));
                    continue;
                }
                byte[] bytes = new byte[spec.ByteLength];
                FloatCodec.Encode(dtype, values, bytes);
                writer.Write(spec.Name, bytes);
            }
            writer.Commit();
        }
        var config = new JsonObject
        {
            ["model_type"] = "llama",
            ["architectures"] = new JsonArray("LlamaForCausalLM"),
            ["vocab_size"] = shape.Vocab,
            ["hidden_size"] = shape.Hidden,
            ["intermediate_size"] = shape.Intermediate,
            ["num_hidden_layers"] = shape.Layers,
            ["num_attention_heads"] = shape.Heads,
            ["num_key_value_heads"] = shape.KvHeads,
            ["max_position_embeddings"] = 64,
            ["rms_norm_eps"] = 1e-5,
            ["tie_word_embeddings"] = false,
            ["torch_dtype"] = dtype switch { DType.F16 => "float16", DType.BF16 => "bfloat16", _ => "float32" },
        };
        File.WriteAllText(Path.Combine(directory, "config.json"), config.ToJsonString());
    }

    /// <summary>A PEFT LoRA adapter (fp32 factors, rank <paramref name="rank"/>) on the named projections (e.g. "q_proj") of every layer.</summary>
    public static void WriteAdapter(string directory, Shape shape, int rank, double alpha, IReadOnlyList<string> targets)
    {
        var tensors = new List<(TensorSpec Spec, ReadOnlyMemory<byte> Data)>();
        uint state = 7;
        for (int i = 0; i < shape.Layers; i++)
        {
            foreach (var (module, inF, outF) in Projections(shape).Where(p => targets.Contains(p.Module[(p.Module.IndexOf('.') + 1)..])))
            {
                string key = $"{PeftAdapter.KeyPrefix}model.layers.{i}.{module}";
                tensors.Add(PeftAdapter.EncodeTensor(key + ".lora_A.weight", [rank, inF], Values(rank * inF, ref state, 0)));
                tensors.Add(PeftAdapter.EncodeTensor(key + ".lora_B.weight", [outF, rank], Values(outF * rank, ref state, 0)));
            }
        }
        PeftAdapter.Save(directory, new PeftAdapterConfig { R = rank, Alpha = alpha, TargetModules = TargetModules.FromList(targets) }, tensors);
    }

    /// <summary><paramref name="offset"/> + values in [-0.035, 0.035) from a linear congruential generator.</summary>
    public static float[] Values(int count, ref uint state, float offset)
    {
        var values = new float[count];
        for (int i = 0; i < count; i++)
        {
            state = (state * 1664525) + 1013904223;
            values[i] = offset + ((((state >> 8) / (float)(1 << 24)) - 0.5f) * 0.07f);
        }
        return values;
    }

    /// <summary>LLaMA dimensions (head dim = hidden / heads).</summary>
    public sealed record Shape(int Hidden, int Intermediate, int Layers, int Heads, int KvHeads, int Vocab);
}
