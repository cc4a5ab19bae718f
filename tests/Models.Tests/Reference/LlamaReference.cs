using OnnxLora.Core.HuggingFace;

namespace OnnxLora.Models.Tests.Reference;

/// <summary>
/// A LLaMA-family forward written from the Hugging Face equations with plain loops in double, on the
/// raw checkpoint arrays. Shares no code with the model under test.
/// </summary>
internal static class LlamaReference
{
    /// <summary>Logits [seq][vocab] for one sequence. Padding keys (mask 0) are never attended; rows of padding queries are not meaningful.</summary>
    public static double[][] Logits(LlamaConfig c, Weights w, long[] ids, long[]? mask = null, long[]? positions = null)
    {
        int seq = ids.Length, hidden = c.HiddenSize, d = c.HeadDim, heads = c.NumAttentionHeads, kvHeads = c.NumKeyValueHeads;
        positions ??= Enumerable.Range(0, seq).Select(i => (long)i).ToArray();
        bool qwen = c.ModelType == "qwen2";
        bool qkvBias = qwen || c.AttentionBias, oBias = !qwen && c.AttentionBias;

        var embed = w["model.embed_tokens.weight"];
        var h = new double[seq][];
        for (int t = 0; t < seq; t++)
        {
            h[t] = Ops.Row(embed, ids[t], hidden);
        }

        // Inverse frequencies θ^(-2i/d), written independently of the model code.
        var invFreq = new double[d / 2];
        for (int i = 0; i < d / 2; i++)
        {
            invFreq[i] = Math.Pow(c.RopeTheta, -(2.0 * i) / d);
        }

        for (int layer = 0; layer < c.NumHiddenLayers; layer++)
        {
            string p = $"model.layers.{layer}.";
            double[]? B(string name) => w.Has(p + name + ".bias") ? w[p + name + ".bias"] : null;
            var q = new double[seq][];
            var k = new double[seq][];
            var v = new double[seq][];
            for (int t = 0; t < seq; t++)
            {
                var x = Ops.RmsNorm(h[t], w[p + "input_layernorm.weight"], c.RmsNormEps);
                q[t] = Ops.Linear(x, w[p + "self_attn.q_proj.weight"], qkvBias ? B("self_attn.q_proj") : null, heads * d);
                k[t] = Ops.Linear(x, w[p + "self_attn.k_proj.weight"], qkvBias ? B("self_attn.k_proj") : null, kvHeads * d);
                v[t] = Ops.Linear(x, w[p + "self_attn.v_proj.weight"], qkvBias ? B("self_attn.v_proj") : null, kvHeads * d);
                Rotate(q[t], heads, d, positions[t], invFreq);
                Rotate(k[t], kvHeads, d, positions[t], invFreq);
            }
            var attn = new double[seq][];
            int group = heads / kvHeads;
            for (int t = 0; t < seq; t++)
            {
                attn[t] = new double[heads * d];
                for (int head = 0; head < heads; head++)
                {
                    int kvHead = head / group;
                    var allowed = new List<int>();
                    for (int j = 0; j <= t; j++)
                    {
                        bool padding = mask is not null && mask[j] == 0;
                        bool outsideWindow = c.SlidingWindow is int window && t - j >= window;
                        if (!padding && !outsideWindow)
                        {
                            allowed.Add(j);
                        }
                    }
                    if (allowed.Count == 0)
                    {
                        continue; // A padding query with nothing to attend: undefined, never compared.
                    }
                    var scores = allowed.Select(j =>
                    {
                        double s = 0;
                        for (int e = 0; e < d; e++)
                        {
                            s += q[t][head * d + e] * k[j][kvHead * d + e];
                        }
                        return s / Math.Sqrt(d);
                    }).ToArray();
                    var probs = Ops.Softmax(scores);
                    for (int a = 0; a < allowed.Count; a++)
                    {
                        for (int e = 0; e < d; e++)
                        {
                            attn[t][head * d + e] += probs[a] * v[allowed[a]][kvHead * d + e];
                        }
                    }
                }
            }
            for (int t = 0; t < seq; t++)
            {
                var o = Ops.Linear(attn[t], w[p + "self_attn.o_proj.weight"], oBias ? B("self_attn.o_proj") : null, hidden);
                h[t] = Ops.Add(h[t], o);
                var x = Ops.RmsNorm(h[t], w[p + "post_attention_layernorm.weight"], c.RmsNormEps);
                var gate = Ops.Linear(x, w[p + "mlp.gate_proj.weight"], c.MlpBias ? B("mlp.gate_proj") : null, c.IntermediateSize);
                var up = Ops.Linear(x, w[p + "mlp.up_proj.weight"], c.MlpBias ? B("mlp.up_proj") : null, c.IntermediateSize);
                var act = gate.Select((g, i) => Ops.Silu(g) * up[i]).ToArray();
                var down = Ops.Linear(act, w[p + "mlp.down_proj.weight"], c.MlpBias ? B("mlp.down_proj") : null, hidden);
                h[t] = Ops.Add(h[t], down);
            }
        }
        var head_ = c.TieWordEmbeddings ? embed : w["lm_head.weight"];
        return h.Select(x => Ops.Linear(Ops.RmsNorm(x, w["model.norm.weight"], c.RmsNormEps), head_, null, c.VocabSize)).ToArray();
    }

    /// <summary>Rotates pairs (i, i + d/2) of each head by angle position·invFreq[i].</summary>
    private static void Rotate(double[] x, int heads, int d, long position, double[] invFreq)
    {
        int half = d / 2;
        for (int head = 0; head < heads; head++)
        {
            for (int i = 0; i < half; i++)
            {
                double angle = position * invFreq[i];
                double cos = Math.Cos(angle), sin = Math.Sin(angle);
                int a = head * d + i, b = a + half;
                double x1 = x[a], x2 = x[b];
                x[a] = x1 * cos - x2 * sin;
                x[b] = x2 * cos + x1 * sin;
            }
        }
    }
}
