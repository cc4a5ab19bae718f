using Google.Protobuf;
using Onnx;
using DataType = Onnx.TensorProto.Types.DataType;

namespace OnnxLora.ValidateBench;

/// <summary>
/// A synthetic decoder-shaped graph for whole-pipeline figures: embedding Gather, <c>layers</c> residual blocks
/// h = h + Relu(h·W_l) with a rank-r LoRA adapter on every W_l, and an lm_head MatMul to <c>vocab</c> logits.
/// Written three ways: base (W), unmerged (W plus MatMul(MatMul(h, A), B)·s branches) and merged (W + s·A·B).
/// </summary>
internal sealed class SyntheticLm(int vocab, int hidden, int layers, int rank, int seed)
{
    private readonly Random _rng = new(seed);
    private readonly List<float[]> _w = [];
    private readonly List<float[]> _a = [];
    private readonly List<float[]> _b = [];
    private float[] _embedding = [];
    private float[] _head = [];
    private const float Scale = 2.0f;

    public void Initialise()
    {
        _embedding = Fill(vocab * hidden, 1.0);
        for (int l = 0; l < layers; l++)
        {
            _w.Add(Fill(hidden * hidden, 1.0 / Math.Sqrt(hidden)));
            _a.Add(Fill(hidden * rank, 1.0 / Math.Sqrt(hidden)));
            _b.Add(Fill(rank * hidden, 0.02));
        }
        _head = Fill(hidden * vocab, 1.0 / Math.Sqrt(hidden));
    }

    public enum Kind
    {
        Base,
        Unmerged,
        Merged,
    }

    public void Write(string path, Kind kind)
    {
        var g = new GraphProto { Name = $"synthetic_{kind}" };
        g.Input.Add(Value("input_ids", DataType.Int64, "batch", "sequence"));
        g.Input.Add(Value("attention_mask", DataType.Int64, "batch", "sequence"));
        g.Output.Add(Value("logits", DataType.Float, "batch", "sequence", vocab.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        g.Initializer.Add(Tensor("embed", _embedding, vocab, hidden));
        g.Initializer.Add(Tensor("lm_head", _head, hidden, vocab));
        g.Initializer.Add(new TensorProto { Name = "axes", DataType = (int)DataType.Int64, Dims = { 1 }, Int64Data = { -1 } });
        if (kind == Kind.Unmerged)
        {
            g.Initializer.Add(Tensor("scale", [Scale]));
        }
        g.Node.Add(Node("Gather", ["embed", "input_ids"], ["h0_raw"]));
        g.Node.Add(Node("Cast", ["attention_mask"], ["mask_f"], new AttributeProto { Name = "to", Type = AttributeProto.Types.AttributeType.Int, I = (long)DataType.Float }));
        g.Node.Add(Node("Unsqueeze", ["mask_f", "axes"], ["mask3"]));
        g.Node.Add(Node("Mul", ["h0_raw", "mask3"], ["h0"]));
        for (int l = 0; l < layers; l++)
        {
            string h = $"h{l}";
            float[] w = kind == Kind.Merged ? Merge(_w[l], _a[l], _b[l]) : _w[l];
            g.Initializer.Add(Tensor($"w{l}", w, hidden, hidden));
            string proj = $"proj{l}";
            if (kind == Kind.Unmerged)
            {
                g.Initializer.Add(Tensor($"a{l}", _a[l], hidden, rank));
                g.Initializer.Add(Tensor($"b{l}", _b[l], rank, hidden));
                g.Node.Add(Node("MatMul", [h, $"w{l}"], [$"base{l}"]));
                g.Node.Add(Node("MatMul", [h, $"a{l}"], [$"ha{l}"]));
                g.Node.Add(Node("MatMul", [$"ha{l}", $"b{l}"], [$"hab{l}"]));
                g.Node.Add(Node("Mul", [$"hab{l}", "scale"], [$"delta{l}"]));
                g.Node.Add(Node("Add", [$"base{l}", $"delta{l}"], [proj]));
            }
            else
            {
                g.Node.Add(Node("MatMul", [h, $"w{l}"], [proj]));
            }
            g.Node.Add(Node("Relu", [proj], [$"act{l}"]));
            g.Node.Add(Node("Add", [h, $"act{l}"], [$"h{l + 1}"]));
        }
        g.Node.Add(Node("MatMul", [$"h{layers}", "lm_head"], ["logits"]));
        var model = new ModelProto { IrVersion = 8, ProducerName = "OnnxLora.ValidateBench", Graph = g };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = 17 });
        using var file = File.Create(path);
        model.WriteTo(file);
    }

    private float[] Merge(float[] w, float[] a, float[] b)
    {
        var m = new float[w.Length];
        for (int i = 0; i < hidden; i++)
        {
            for (int j = 0; j < hidden; j++)
            {
                double sum = 0;
                for (int r = 0; r < rank; r++)
                {
                    sum += (double)a[i * rank + r] * b[r * hidden + j];
                }
                m[i * hidden + j] = (float)(w[i * hidden + j] + Scale * sum);
            }
        }
        return m;
    }

    private float[] Fill(int count, double scale)
    {
        var a = new float[count];
        for (int i = 0; i < count; i++)
        {
            a[i] = (float)((_rng.NextDouble() * 2 - 1) * scale);
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
        return new ValueInfoProto { Name = name, Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)type, Shape = shape } } };
    }

    private static TensorProto Tensor(string name, float[] data, params long[] dims)
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
