using Microsoft.ML.OnnxRuntime;
using Onnx;
using OnnxLora.Core;
using OnnxLora.Core.Onnx;
using OnnxLora.Core.Peft;

namespace OnnxLora.Merge.Tests.Onnx;

/// <summary>Adapters for <see cref="TorchLikeModel"/>, ONNX Runtime runs, and graph comparisons.</summary>
internal static class OnnxTestKit
{
    public static readonly long[] Ids = [3, 0, 9, 5, 5, 1];

    /// <summary>A LoRA adapter on the given modules (embedding included) with random A and B; returns it and its branches (scale s).</summary>
    public static (PeftAdapter Adapter, List<LoraBranch> Branches) Lora(string[] modules, int r, double alpha, int seed,
        bool rslora = false, bool fanInFanOut = false, float bScale = 0.5f, Func<string, float[]?>? magnitude = null)
    {
        var tensors = new List<(string, long[], float[])>();
        var branches = new List<LoraBranch>();
        double s = rslora ? alpha / Math.Sqrt(r) : alpha / r;
        foreach (string m in modules)
        {
            var (o, i) = TorchLikeModel.DimsOf(m);
            var kind = m == TorchLikeModel.Embed ? AdapterModuleKind.LoraEmbedding : AdapterModuleKind.Lora;
            var a = TestData.Random(r * i, seed++, 0.5);
            var b = TestData.Random(o * r, seed++, bScale);
            tensors.Add((PeftAdapter.KeyFor(m, kind, AdapterTensorRole.LoraA), [r, i], a));
            tensors.Add((PeftAdapter.KeyFor(m, kind, AdapterTensorRole.LoraB), [o, r], b));
            if (magnitude?.Invoke(m) is { } mag)
            {
                tensors.Add((PeftAdapter.KeyFor(m, kind, AdapterTensorRole.Magnitude), [o], mag));
            }
            branches.Add(new LoraBranch(m, a, b, r, s));
        }
        var config = new PeftAdapterConfig
        {
            R = r,
            Alpha = alpha,
            UseRsLora = rslora,
            FanInFanOut = fanInFanOut,
            UseDora = magnitude is not null,
            TargetModules = TargetModules.FromList(modules.Select(m => m[(m.LastIndexOf('.') + 1)..]).Distinct()),
        };
        return (TestData.Adapter(config, tensors.ToArray()), branches);
    }

    public static IReadOnlyList<WeightedAdapter> One(PeftAdapter adapter, double weight = 1.0) => [new WeightedAdapter(adapter, weight)];

    /// <summary>Runs a model on CPU with token ids and returns its first output as fp32.</summary>
    public static float[] Run(string modelPath, long[] ids)
    {
        using var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_DISABLE_ALL };
        using var session = new InferenceSession(modelPath, options);
        using var input = OrtValue.CreateTensorValueFromMemory(ids, [ids.Length]);
        using var runOptions = new RunOptions();
        using var outputs = session.Run(runOptions, ["input_ids"], [input], [session.OutputMetadata.Keys.First()]);
        return outputs[0].GetTensorDataAsSpan<float>().ToArray();
    }

    /// <summary>|actual − expected| ≤ tol·max(1, max|expected|) for every element.</summary>
    public static void AssertOutputsClose(double[] expected, float[] actual, double tol, string what)
    {
        Assert.HasCount(expected.Length, actual, what);
        double scale = Math.Max(1, expected.Max(Math.Abs));
        double worst = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            worst = Math.Max(worst, Math.Abs(actual[i] - expected[i]));
        }
        Assert.IsTrue(worst <= tol * scale, $"{what}: largest error {worst:E2} over {expected.Length} outputs (scale {scale:G4}), allowed {tol * scale:E2}");
    }

    public static float[] Initializer(string modelPath, string name)
    {
        var model = OnnxFile.Load(modelPath);
        return OnnxTensors.ReadAsSingle(model.Graph.Initializer.Single(t => t.Name == name));
    }

    /// <summary>The graph without initializer data: nodes, inputs, outputs, initializer names/types/dims.</summary>
    public static string Structure(ModelProto model)
    {
        var g = model.Graph.Clone();
        foreach (var t in g.Initializer)
        {
            t.RawData = Google.Protobuf.ByteString.Empty;
            t.FloatData.Clear();
            t.Int32Data.Clear();
            t.ExternalData.Clear();
            t.DataLocation = TensorProto.Types.DataLocation.Default;
        }
        return g.ToString();
    }

    /// <summary>Files in a folder other than <paramref name="except"/>, for atomicity checks.</summary>
    public static string[] OtherFiles(string folder, params string[] except) =>
        Directory.GetFiles(folder).Select(Path.GetFileName).Where(f => !except.Contains(f)).Select(f => f!).Order(StringComparer.Ordinal).ToArray();

    public static DType DTypeOf(string modelPath, string initializer)
    {
        var model = OnnxFile.Load(modelPath, new OnnxLoadOptions { LoadExternalData = false });
        OnnxTensors.TryFromOnnx(model.Graph.Initializer.Single(t => t.Name == initializer).DataType, out var dt);
        return dt;
    }
}
