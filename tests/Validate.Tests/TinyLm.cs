using Google.Protobuf;
using Onnx;
using DataType = Onnx.TensorProto.Types.DataType;

namespace OnnxLora.Validate.Tests;

/// <summary>
/// A tiny "language model" built directly as an ONNX graph, so Validate's tests do not depend on the exporter:
/// logits[b, s, :] = mask[b, s] · E[input_ids[b, s], :] · W (+ a LoRA branch in the unmerged variant).
/// Inputs input_ids/attention_mask int64 [batch, sequence]; output logits [batch, sequence, vocab].
/// </summary>
internal sealed class TinyLm
{
    public TinyLm(int vocab, int hidden, int rank, int seed)
    {
        Vocab = vocab;
        Hidden = hidden;
        Rank = rank;
        var rng = new Random(seed);
        Embedding = Fill(rng, vocab * hidden, 1.0);
        W = Fill(rng, hidden * vocab, 0.5);
        A = Fill(rng, hidden * rank, 0.3);
        B = Fill(rng, rank * vocab, 0.3);
    }

    public int Vocab { get; }

    public int Hidden { get; }

    public int Rank { get; }

    public float Scale { get; init; } = 0.5f;

    /// <summary>[vocab, hidden] row-major.</summary>
    public float[] Embedding { get; }

    /// <summary>[hidden, vocab] row-major.</summary>
    public float[] W { get; }

    /// <summary>[hidden, rank].</summary>
    public float[] A { get; }

    /// <summary>[rank, vocab].</summary>
    public float[] B { get; }

    /// <summary>W + scale·A·B, computed in double and rounded once.</summary>
    public float[] MergedW()
    {
        var m = new float[Hidden * Vocab];
        for (int h = 0; h < Hidden; h++)
        {
            for (int v = 0; v < Vocab; v++)
            {
                double sum = 0;
                for (int r = 0; r < Rank; r++)
                {
                    sum += (double)A[h * Rank + r] * B[r * Vocab + v];
                }
                m[h * Vocab + v] = (float)(W[h * Vocab + v] + Scale * sum);
            }
        }
        return m;
    }

    /// <summary>Independent double-precision logits for weight <paramref name="w"/> ([hidden, vocab]).</summary>
    public double[] Logits(float[] w, long[] ids, long[] mask)
    {
        var logits = new double[ids.Length * Vocab];
        for (int p = 0; p < ids.Length; p++)
        {
            for (int v = 0; v < Vocab; v++)
            {
                double sum = 0;
                for (int h = 0; h < Hidden; h++)
                {
                    sum += (double)Embedding[ids[p] * Hidden + h] * w[h * Vocab + v];
                }
                logits[p * Vocab + v] = mask[p] * sum;
            }
        }
        return logits;
    }

    /// <summary>Options of <see cref="Write"/>.</summary>
    public sealed record Graph
    {
        /// <summary>Weight of the output MatMul ([hidden, vocab]).</summary>
        public required float[] Weight { get; init; }

        /// <summary>Add the LoRA branch MatMul(MatMul(h, A), B)·scale as separate nodes.</summary>
        public bool LoraBranch { get; init; }

        /// <summary>Cast logits to float16.</summary>
        public bool Float16Output { get; init; }

        /// <summary>Declare the vocab dim of logits as a number (else symbolic "vocab").</summary>
        public bool FixedVocabDim { get; init; } = true;

        /// <summary>Store the output weight in an external data file next to the model.</summary>
        public string? ExternalWeightFile { get; init; }

        /// <summary>Extra (unused) int64 [batch, sequence] inputs, e.g. position_ids.</summary>
        public string[] ExtraInputs { get; init; } = [];

        /// <summary>Name of the output.</summary>
        public string OutputName { get; init; } = "logits";

        /// <summary>
        /// A with-past graph (<see cref="PastLogits"/>): attention_mask [batch, total_sequence], position_ids,
        /// past_key_values.0.key/.value in, present.0.key/.value out, in the names of Optimum's decoder exports.
        /// </summary>
        public bool WithPast { get; init; }
    }

    /// <summary>Weight of position_ids in the with-past graph's hidden state.</summary>
    public const float PositionWeight = 0.01f;

    /// <summary>
    /// Independent double-precision logits of the with-past graph at one position: the hidden state is
    /// E[current] + Σ E[t] over every token of the context (past and current chunk, mask ones) + PositionWeight·position.
    /// </summary>
    public double[] PastLogits(float[] w, IReadOnlyList<long> context, long current, long position)
    {
        var h = new double[Hidden];
        for (int j = 0; j < Hidden; j++)
        {
            double sum = (double)Embedding[current * Hidden + j] + (double)PositionWeight * position;
            foreach (long t in context)
            {
                sum += Embedding[t * Hidden + j];
            }
            h[j] = sum;
        }
        var logits = new double[Vocab];
        for (int v = 0; v < Vocab; v++)
        {
            double sum = 0;
            for (int j = 0; j < Hidden; j++)
            {
                sum += h[j] * w[j * Vocab + v];
            }
            logits[v] = sum;
        }
        return logits;
    }

    /// <summary>Greedy tokens of the with-past graph for one prompt row, from <see cref="PastLogits"/> (fp64).</summary>
    public long[] GreedyPast(float[] w, long[] prompt, int newTokens)
    {
        var context = new List<long>(prompt);
        var tokens = new long[newTokens];
        long current = prompt[^1];
        for (int t = 0; t < newTokens; t++)
        {
            var logits = PastLogits(w, context, current, context.Count - 1);
            int best = 0;
            for (int v = 1; v < Vocab; v++)
            {
                if (logits[v] > logits[best])
                {
                    best = v;
                }
            }
            tokens[t] = best;
            context.Add(best);
            current = best;
        }
        return tokens;
    }

    public string Write(string path, Graph g)
    {
        var graph = new GraphProto { Name = "tiny_lm" };
        graph.Input.Add(Value("input_ids", DataType.Int64, "batch", "sequence"));
        graph.Input.Add(Value("attention_mask", DataType.Int64, "batch", g.WithPast ? "total_sequence" : "sequence"));
        if (g.WithPast)
        {
            string hidden = Hidden.ToString(System.Globalization.CultureInfo.InvariantCulture);
            graph.Input.Add(Value("position_ids", DataType.Int64, "batch", "sequence"));
            graph.Input.Add(Value("past_key_values.0.key", DataType.Float, "batch", "1", "past_sequence", hidden));
            graph.Input.Add(Value("past_key_values.0.value", DataType.Float, "batch", "1", "past_sequence", hidden));
            graph.Output.Add(Value("present.0.key", DataType.Float, "batch", "1", "total_sequence", hidden));
            graph.Output.Add(Value("present.0.value", DataType.Float, "batch", "1", "total_sequence", hidden));
        }
        foreach (string extra in g.ExtraInputs)
        {
            graph.Input.Add(Value(extra, DataType.Int64, "batch", "sequence"));
        }
        graph.Output.Add(Value(g.OutputName, g.Float16Output ? DataType.Float16 : DataType.Float, "batch", "sequence", g.FixedVocabDim ? Vocab.ToString(System.Globalization.CultureInfo.InvariantCulture) : "vocab"));

        graph.Initializer.Add(FloatTensor("embed.weight", Embedding, Vocab, Hidden));
        var weight = FloatTensor("lm_head.weight", g.Weight, Hidden, Vocab);
        if (g.ExternalWeightFile is not null)
        {
            var bytes = weight.RawData.ToByteArray();
            File.WriteAllBytes(Path.Combine(Path.GetDirectoryName(path)!, g.ExternalWeightFile), bytes);
            weight.RawData = ByteString.Empty;
            weight.DataLocation = TensorProto.Types.DataLocation.External;
            weight.ExternalData.Add(new StringStringEntryProto { Key = "location", Value = g.ExternalWeightFile });
            weight.ExternalData.Add(new StringStringEntryProto { Key = "offset", Value = "0" });
            weight.ExternalData.Add(new StringStringEntryProto { Key = "length", Value = bytes.Length.ToString(System.Globalization.CultureInfo.InvariantCulture) });
        }
        graph.Initializer.Add(weight);
        graph.Initializer.Add(new TensorProto { Name = "axes_last", DataType = (int)DataType.Int64, Dims = { 1 }, Int64Data = { -1 } });

        graph.Node.Add(Node("Gather", ["embed.weight", "input_ids"], ["emb"]));
        graph.Node.Add(Node("Cast", ["attention_mask"], ["mask_f"], new AttributeProto { Name = "to", Type = AttributeProto.Types.AttributeType.Int, I = (long)DataType.Float }));
        if (g.WithPast)
        {
            // h = emb + Σ_total mask·key + PositionWeight·position, key = emb: the cache holds every earlier token.
            graph.Initializer.Add(new TensorProto { Name = "axes_1", DataType = (int)DataType.Int64, Dims = { 1 }, Int64Data = { 1 } });
            graph.Initializer.Add(new TensorProto { Name = "axes_2", DataType = (int)DataType.Int64, Dims = { 1 }, Int64Data = { 2 } });
            graph.Initializer.Add(new TensorProto { Name = "axes_1_3", DataType = (int)DataType.Int64, Dims = { 2 }, Int64Data = { 1, 3 } });
            graph.Initializer.Add(FloatTensor("position_weight", [PositionWeight]));
            var axis2 = new AttributeProto { Name = "axis", Type = AttributeProto.Types.AttributeType.Int, I = 2 };
            graph.Node.Add(Node("Unsqueeze", ["emb", "axes_1"], ["key"]));
            graph.Node.Add(Node("Concat", ["past_key_values.0.key", "key"], ["present.0.key"], axis2));
            graph.Node.Add(Node("Concat", ["past_key_values.0.value", "key"], ["present.0.value"], axis2));
            graph.Node.Add(Node("Unsqueeze", ["mask_f", "axes_1_3"], ["mask4"]));
            graph.Node.Add(Node("Mul", ["present.0.key", "mask4"], ["masked_keys"]));
            graph.Node.Add(Node("ReduceSum", ["masked_keys", "axes_2"], ["context4"]));
            graph.Node.Add(Node("Squeeze", ["context4", "axes_1"], ["context"]));
            graph.Node.Add(Node("Cast", ["position_ids"], ["position_f"], new AttributeProto { Name = "to", Type = AttributeProto.Types.AttributeType.Int, I = (long)DataType.Float }));
            graph.Node.Add(Node("Unsqueeze", ["position_f", "axes_last"], ["position3"]));
            graph.Node.Add(Node("Mul", ["position3", "position_weight"], ["position_term"]));
            graph.Node.Add(Node("Add", ["emb", "context"], ["emb_context"]));
            graph.Node.Add(Node("Add", ["emb_context", "position_term"], ["h"]));
        }
        else
        {
            graph.Node.Add(Node("Unsqueeze", ["mask_f", "axes_last"], ["mask3"]));
            graph.Node.Add(Node("Mul", ["emb", "mask3"], ["h"]));
        }
        string logits = g.Float16Output ? "logits_f32" : g.OutputName;
        if (g.LoraBranch)
        {
            graph.Initializer.Add(FloatTensor("lora_A", A, Hidden, Rank));
            graph.Initializer.Add(FloatTensor("lora_B", B, Rank, Vocab));
            graph.Initializer.Add(FloatTensor("lora_scale", [Scale]));
            graph.Node.Add(Node("MatMul", ["h", "lm_head.weight"], ["base_out"]));
            graph.Node.Add(Node("MatMul", ["h", "lora_A"], ["ha"]));
            graph.Node.Add(Node("MatMul", ["ha", "lora_B"], ["hab"]));
            graph.Node.Add(Node("Mul", ["hab", "lora_scale"], ["delta"]));
            graph.Node.Add(Node("Add", ["base_out", "delta"], [logits]));
        }
        else
        {
            graph.Node.Add(Node("MatMul", ["h", "lm_head.weight"], [logits]));
        }
        if (g.Float16Output)
        {
            graph.Node.Add(Node("Cast", ["logits_f32"], [g.OutputName], new AttributeProto { Name = "to", Type = AttributeProto.Types.AttributeType.Int, I = (long)DataType.Float16 }));
        }

        var model = new ModelProto { IrVersion = 8, ProducerName = "OnnxLora.Validate.Tests", Graph = graph };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = 17 });
        File.WriteAllBytes(path, model.ToByteArray());
        return path;
    }

    public static float[] Fill(Random rng, int count, double scale)
    {
        var a = new float[count];
        for (int i = 0; i < count; i++)
        {
            a[i] = (float)((rng.NextDouble() * 2 - 1) * scale);
        }
        return a;
    }

    private static ValueInfoProto Value(string name, DataType type, params string[] dims)
    {
        var shape = new TensorShapeProto();
        foreach (string d in dims)
        {
            shape.Dim.Add(long.TryParse(d, out long n)
                ? new TensorShapeProto.Types.Dimension { DimValue = n }
                : new TensorShapeProto.Types.Dimension { DimParam = d });
        }
        return new ValueInfoProto
        {
            Name = name,
            Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)type, Shape = shape } },
        };
    }

    private static TensorProto FloatTensor(string name, float[] data, params long[] dims)
    {
        var t = new TensorProto { Name = name, DataType = (int)DataType.Float };
        t.Dims.AddRange(dims);
        var bytes = new byte[data.Length * 4];
        Buffer.BlockCopy(data, 0, bytes, 0, bytes.Length);
        t.RawData = ByteString.CopyFrom(bytes);
        return t;
    }

    private static NodeProto Node(string op, string[] inputs, string[] outputs, params AttributeProto[] attributes)
    {
        var n = new NodeProto { OpType = op, Name = $"{op}_{outputs[0]}" };
        n.Input.AddRange(inputs);
        n.Output.AddRange(outputs);
        n.Attribute.AddRange(attributes);
        return n;
    }
}
