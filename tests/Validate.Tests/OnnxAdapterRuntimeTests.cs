using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Onnx;
using OnnxLora.Core;
using OnnxLora.Core.Onnx;
using OnnxLora.Core.Peft;
using DataType = Onnx.TensorProto.Types.DataType;

namespace OnnxLora.Validate.Tests;

/// <summary>
/// Our <c>.onnx_adapter</c> files in ONNX Runtime's own loader (<see cref="OrtLoraAdapter"/>; no allocator: the parameters stay on the CPU), activated per run
/// on one session over a hand-built graph whose LoRA factors are inputs with empty (rank-0) defaults:
/// y = x·Wᵀ + (x·Aᵀ)·(s·Bᵀ). Outputs are checked against x·(W + s·B·A)ᵀ computed in fp64 here.
/// </summary>
[TestClass]
public sealed class OnnxAdapterRuntimeTests
{
    private const int In = 12, Out = 10, Batch = 3;
    private const string Module = "model.layers.0.self_attn.q_proj";
    private static readonly string KeyA = PeftAdapter.KeyPrefix + Module + ".lora_A.weight";
    private static readonly string KeyB = PeftAdapter.KeyPrefix + Module + ".lora_B.weight";

    private static string _dir = "";
    private static float[] _w = [];
    private static float[] _x = [];

    [ClassInitialize]
    public static void Setup(TestContext _)
    {
        _dir = Path.Combine(Path.GetTempPath(), "onnxlora-adapter-ort", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_dir);
        _w = Values(Out * In, 1, 0.5);
        _x = Values(Batch * In, 2, 1.0);
    }

    [ClassCleanup]
    public static void Cleanup() => Directory.Delete(_dir, recursive: true);

    [TestMethod]
    public void ThreeAdaptersOfDifferentRanksMatchTheirMergedWeightsInOneSession()
    {
        string model = WriteGraph(Path.Combine(_dir, "adapters.onnx"), loraInputs: true);
        using var session = new InferenceSession(model);
        var cases = new[] { (Rank: 2, Alpha: 4.0, RsLora: false), (Rank: 4, Alpha: 4.0, RsLora: true), (Rank: 8, Alpha: 32.0, RsLora: false) };
        var adapters = new List<(OrtLoraAdapter Ort, double[] Expected)>();
        foreach (var (rank, alpha, rs) in cases)
        {
            var (peftDir, a, b) = WritePeft(rank, alpha, rs, seed: 10 + rank);
            using var peft = PeftAdapter.Load(peftDir);
            string file = Path.Combine(_dir, $"r{rank}{OnnxAdapterFile.Extension}");
            OnnxAdapterFile.WriteFromPeft(file, peft);
            double s = rs ? alpha / Math.Sqrt(rank) : alpha / rank;
            adapters.Add((OrtLoraAdapter.Create(file, null), Reference(MergedFp64(a, b, rank, s))));
        }
        try
        {
            // Interleave: each adapter twice, switching on every run of the same session.
            foreach (int k in new[] { 0, 1, 2, 2, 0, 1 })
            {
                using var options = new RunOptions();
                options.AddActiveLoraAdapter(adapters[k].Ort);
                float[] y = Run(session, options);
                double err = y.Zip(adapters[k].Expected).Max(p => Math.Abs(p.First - p.Second));
                Assert.IsLessThanOrEqualTo(1e-4, err, $"adapter r={cases[k].Rank}: max abs {err}");
                double toBase = y.Zip(Reference(_w.Select(v => (double)v).ToArray())).Max(p => Math.Abs(p.First - p.Second));
                Assert.IsGreaterThan(1e-2, toBase, "the adapter must change the output (else the check above is vacuous)");
            }
        }
        finally
        {
            adapters.ForEach(a => a.Ort.Dispose());
        }
    }

    [TestMethod]
    public void NoActiveAdapterGivesTheBaseModelExactly()
    {
        using var withInputs = new InferenceSession(WriteGraph(Path.Combine(_dir, "inputs.onnx"), loraInputs: true));
        using var plain = new InferenceSession(WriteGraph(Path.Combine(_dir, "base.onnx"), loraInputs: false));
        using var options = new RunOptions();
        float[] y = Run(withInputs, options);
        float[] expected = Run(plain, options);
        CollectionAssert.AreEqual(expected, y, "rank-0 defaults add exact zeros");
    }

    [TestMethod]
    public void OnnxRuntimeLoadsOurBytesAndRejectsACorruptedFile()
    {
        var (peftDir, _, _) = WritePeft(2, 4.0, false, seed: 3);
        using var peft = PeftAdapter.Load(peftDir);
        byte[] bytes = OnnxAdapterFile.Serialize(OnnxAdapterFile.FromPeft(peft, DType.F16)).ToArray();
        using (OrtLoraAdapter.Create(bytes, null))
        {
        }
        byte[] corrupted = (byte[])bytes.Clone();
        corrupted[4] = (byte)'X';
        Assert.ThrowsExactly<OnnxRuntimeException>(() => OrtLoraAdapter.Create(corrupted, null).Dispose());
        BadInput.Throws(() => OnnxAdapterFile.Parse(corrupted, "corrupted.onnx_adapter"));
    }

    private static float[] Run(InferenceSession session, RunOptions options)
    {
        using var x = OrtValue.CreateTensorValueFromMemory(_x, [Batch, In]);
        using var results = session.Run(options, ["x"], [x], ["y"]);
        return results[0].GetTensorDataAsSpan<float>().ToArray();
    }

    /// <summary>y[b, o] = Σ_i x[b, i]·w[o, i] in fp64.</summary>
    private static double[] Reference(double[] w)
    {
        var y = new double[Batch * Out];
        for (int b = 0; b < Batch; b++)
        {
            for (int o = 0; o < Out; o++)
            {
                double sum = 0;
                for (int i = 0; i < In; i++)
                {
                    sum += _x[(b * In) + i] * w[(o * In) + i];
                }
                y[(b * Out) + o] = sum;
            }
        }
        return y;
    }

    /// <summary>W + s·B·A in fp64 (B [out, r], A [r, in]).</summary>
    private static double[] MergedFp64(float[] a, float[] b, int rank, double s)
    {
        var m = new double[Out * In];
        for (int o = 0; o < Out; o++)
        {
            for (int i = 0; i < In; i++)
            {
                double d = 0;
                for (int k = 0; k < rank; k++)
                {
                    d += (double)b[(o * rank) + k] * a[(k * In) + i];
                }
                m[(o * In) + i] = _w[(o * In) + i] + (s * d);
            }
        }
        return m;
    }

    private static (string Dir, float[] A, float[] B) WritePeft(int rank, double alpha, bool rsLora, int seed)
    {
        float[] a = Values(rank * In, seed, 0.5);
        float[] b = Values(Out * rank, seed + 1, 0.5);
        string dir = Path.Combine(_dir, $"peft-{Guid.NewGuid():N}");
        var config = new PeftAdapterConfig { R = rank, Alpha = alpha, UseRsLora = rsLora, TargetModules = TargetModules.FromList(["q_proj"]) };
        PeftAdapter.Save(dir, config, [PeftAdapter.EncodeTensor(KeyA, [rank, In], a, DType.F32), PeftAdapter.EncodeTensor(KeyB, [Out, rank], b, DType.F32)]);
        return (dir, a, b);
    }

    /// <summary>The test graph, written with protobuf directly (not our exporter). With <paramref name="loraInputs"/>, A and B are
    /// graph inputs [in, r] / [r, out] whose initializers of the same name are their empty rank-0 defaults.</summary>
    private static string WriteGraph(string path, bool loraInputs)
    {
        var graph = new GraphProto { Name = "adapter_test" };
        graph.Input.Add(Value("x", "batch", In.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        graph.Output.Add(Value("y", "batch", Out.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        var wT = new float[In * Out];
        for (int o = 0; o < Out; o++)
        {
            for (int i = 0; i < In; i++)
            {
                wT[(i * Out) + o] = _w[(o * In) + i];
            }
        }
        graph.Initializer.Add(Tensor("w_t", wT, In, Out));
        if (!loraInputs)
        {
            graph.Node.Add(Node("MatMul", ["x", "w_t"], ["y"]));
        }
        else
        {
            graph.Input.Add(Value(KeyA, In.ToString(System.Globalization.CultureInfo.InvariantCulture), "lora_rank"));
            graph.Input.Add(Value(KeyB, "lora_rank", Out.ToString(System.Globalization.CultureInfo.InvariantCulture)));
            graph.Initializer.Add(Tensor(KeyA, [], In, 0));
            graph.Initializer.Add(Tensor(KeyB, [], 0, Out));
            graph.Node.Add(Node("MatMul", ["x", "w_t"], ["base"]));
            graph.Node.Add(Node("MatMul", ["x", KeyA], ["xa"]));
            graph.Node.Add(Node("MatMul", ["xa", KeyB], ["delta"]));
            graph.Node.Add(Node("Add", ["base", "delta"], ["y"]));
        }
        var model = new ModelProto { IrVersion = 8, Graph = graph, ProducerName = "test" };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = 17 });
        File.WriteAllBytes(path, model.ToByteArray());
        return path;
    }

    private static ValueInfoProto Value(string name, params string[] dims)
    {
        var shape = new TensorShapeProto();
        foreach (string d in dims)
        {
            shape.Dim.Add(long.TryParse(d, out long v) ? new TensorShapeProto.Types.Dimension { DimValue = v } : new TensorShapeProto.Types.Dimension { DimParam = d });
        }
        return new ValueInfoProto { Name = name, Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)DataType.Float, Shape = shape } } };
    }

    private static TensorProto Tensor(string name, float[] values, params long[] dims)
    {
        var t = new TensorProto { Name = name, DataType = (int)DataType.Float };
        t.Dims.AddRange(dims);
        t.FloatData.AddRange(values);
        return t;
    }

    private static NodeProto Node(string op, string[] inputs, string[] outputs)
    {
        var n = new NodeProto { OpType = op, Name = outputs[0] + "_" + op };
        n.Input.AddRange(inputs);
        n.Output.AddRange(outputs);
        return n;
    }

    private static float[] Values(int count, int seed, double scale)
    {
        var rng = new Random(seed);
        return [.. Enumerable.Range(0, count).Select(_ => (float)((rng.NextDouble() * 2 - 1) * scale))];
    }
}
