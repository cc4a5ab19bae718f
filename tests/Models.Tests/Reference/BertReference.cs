using OnnxLora.Core.HuggingFace;

namespace OnnxLora.Models.Tests.Reference;

/// <summary>A BERT encoder forward from the Hugging Face equations, plain loops in double on raw checkpoint arrays.</summary>
internal static class BertReference
{
    /// <summary>last_hidden_state [seq][hidden] for one sequence; <paramref name="prefix"/> is "" or "bert.".</summary>
    public static double[][] LastHiddenState(BertConfig c, Weights w, long[] ids, long[]? mask = null, long[]? tokenTypes = null, string prefix = "")
    {
        int seq = ids.Length, hidden = c.HiddenSize, heads = c.NumAttentionHeads, d = hidden / heads;
        double[] W(string name) => w[prefix + name];
        var h = new double[seq][];
        for (int t = 0; t < seq; t++)
        {
            var sum = Ops.Add(Ops.Add(Ops.Row(W("embeddings.word_embeddings.weight"), ids[t], hidden),
                Ops.Row(W("embeddings.position_embeddings.weight"), t, hidden)),
                Ops.Row(W("embeddings.token_type_embeddings.weight"), tokenTypes?[t] ?? 0, hidden));
            h[t] = Ops.LayerNorm(sum, W("embeddings.LayerNorm.weight"), W("embeddings.LayerNorm.bias"), c.LayerNormEps);
        }
        for (int layer = 0; layer < c.NumHiddenLayers; layer++)
        {
            string p = $"encoder.layer.{layer}.";
            double[] Lin(double[] x, string name, int outF) => Ops.Linear(x, W(p + name + ".weight"), W(p + name + ".bias"), outF);
            var q = h.Select(x => Lin(x, "attention.self.query", hidden)).ToArray();
            var k = h.Select(x => Lin(x, "attention.self.key", hidden)).ToArray();
            var v = h.Select(x => Lin(x, "attention.self.value", hidden)).ToArray();
            var keys = Enumerable.Range(0, seq).Where(j => mask is null || mask[j] != 0).ToArray();
            var next = new double[seq][];
            for (int t = 0; t < seq; t++)
            {
                var context = new double[hidden];
                for (int head = 0; head < heads; head++)
                {
                    var scores = keys.Select(j =>
                    {
                        double s = 0;
                        for (int e = 0; e < d; e++)
                        {
                            s += q[t][head * d + e] * k[j][head * d + e];
                        }
                        return s / Math.Sqrt(d);
                    }).ToArray();
                    var probs = Ops.Softmax(scores);
                    for (int a = 0; a < keys.Length; a++)
                    {
                        for (int e = 0; e < d; e++)
                        {
                            context[head * d + e] += probs[a] * v[keys[a]][head * d + e];
                        }
                    }
                }
                var attended = Ops.LayerNorm(Ops.Add(Lin(context, "attention.output.dense", hidden), h[t]),
                    W(p + "attention.output.LayerNorm.weight"), W(p + "attention.output.LayerNorm.bias"), c.LayerNormEps);
                var inter = Lin(attended, "intermediate.dense", c.IntermediateSize).Select(Ops.Gelu).ToArray();
                next[t] = Ops.LayerNorm(Ops.Add(Lin(inter, "output.dense", hidden), attended),
                    W(p + "output.LayerNorm.weight"), W(p + "output.LayerNorm.bias"), c.LayerNormEps);
            }
            h = next;
        }
        return h;
    }

    /// <summary>tanh(W·h[0] + b) with the pooler weights.</summary>
    public static double[] Pooled(BertConfig c, Weights w, double[][] lastHidden, string prefix = "") =>
        Ops.Linear(lastHidden[0], w[prefix + "pooler.dense.weight"], w[prefix + "pooler.dense.bias"], c.HiddenSize).Select(Math.Tanh).ToArray();
}
