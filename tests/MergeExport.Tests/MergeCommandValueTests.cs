using System.Buffers.Binary;
using System.Text.Json;
using OnnxLora.Core;
using OnnxLora.Core.Onnx;
using OnnxLora.Core.Safetensors;
using OnnxLora.Testing;

namespace OnnxLora.MergeExport.Tests;

/// <summary>
/// <c>merge</c> checked by value against <see cref="PeftReference"/> (fp64, PEFT's formulas): weighted adapters
/// (<c>--adapter DIR=W</c>, a negative weight included) into a checkpoint, into an ONNX model whose weights are
/// anonymous (matched through <c>--base-checkpoint</c>), <c>--combine svd</c> and <c>--combine cat</c>, and
/// <c>--dtype</c> bits against an independent round-to-nearest-even.
/// </summary>
[TestClass]
public sealed class MergeCommandValueTests
{
    private const double W1 = 0.5;
    private const double W2 = -0.25;

    /// <summary>The committed sample adapter (r 8, α 16, q_proj / v_proj) and a hand-written rsLoRA one (r 4, α 8, q_proj / o_proj).</summary>
    private static (HandAdapter First, HandAdapter Second) TwoAdapters(TempDir dir) =>
        (HandAdapter.Sample(), HandAdapter.Write(dir.File("second"), ["q_proj", "o_proj"], rank: 4, alpha: 8, rsLora: true, dora: false, seed: 41));

    /// <summary>W + Σ wᵢ·ΔWᵢ for every tensor the adapters touch.</summary>
    private static Dictionary<string, double[]> WeightedSum(IReadOnlyDictionary<string, float[]> sample, params (HandAdapter Adapter, double Weight)[] adapters) =>
        WeightedSumAndSize(sample, adapters).ToDictionary(e => e.Key, e => e.Value.Sum, StringComparer.Ordinal);

    /// <summary>W + Σ wᵢ·ΔWᵢ, and |W| + Σ |wᵢ·ΔWᵢ| (the size of the terms, for rounding bounds).</summary>
    private static Dictionary<string, (double[] Sum, double[] Size)> WeightedSumAndSize(IReadOnlyDictionary<string, float[]> sample, params (HandAdapter Adapter, double Weight)[] adapters)
    {
        var result = new Dictionary<string, (double[] Sum, double[] Size)>(StringComparer.Ordinal);
        foreach (var (adapter, weight) in adapters)
        {
            foreach (var m in adapter.Modules)
            {
                string name = m.Path + ".weight";
                if (!result.TryGetValue(name, out var entry))
                {
                    entry = (sample[name].Select(x => (double)x).ToArray(), sample[name].Select(x => Math.Abs((double)x)).ToArray());
                    result[name] = entry;
                }
                var delta = PeftReference.Delta(m.A, m.B, adapter.Rank, m.InFeatures, m.OutFeatures, adapter.Scaling);
                for (int i = 0; i < delta.Length; i++)
                {
                    entry.Sum[i] += weight * delta[i];
                    entry.Size[i] += Math.Abs(weight * delta[i]);
                }
            }
        }
        return result;
    }

    [TestMethod]
    public void Merge_TwoWeightedAdaptersIntoACheckpoint_MatchesTheFp64WeightedSum()
    {
        using var dir = new TempDir();
        var (first, second) = TwoAdapters(dir);
        var sample = ReferenceCheckpoint.SampleTensors();
        var expected = WeightedSumAndSize(sample, (first, W1), (second, W2));
        Assert.HasCount(4 * 3, expected, "q_proj (both adapters), v_proj, o_proj of 4 layers");

        Ok("merge", "--model", SampleModels.Model, "--adapter", $"{first.Directory}={W1}", "--adapter", $"{second.Directory}={W2}", "--out", dir.File("out"));

        using var merged = SafetensorsFile.Open(dir.File("out/model.safetensors"));
        CollectionAssert.AreEquivalent(sample.Keys.ToList(), merged.Tensors.Select(t => t.Name).ToList());
        foreach (var t in merged.Tensors)
        {
            Assert.AreEqual(DType.F32, t.DType, t.Name);
            var values = PeftReference.Floats(merged.GetBytes(t));
            if (expected.TryGetValue(t.Name, out var exact))
            {
                PeftReference.AssertClose(values, exact.Sum, exact.Size, 4, t.Name);
            }
            else
            {
                CollectionAssert.AreEqual(sample[t.Name], values, $"{t.Name} is not adapted and must be copied as it is");
            }
        }
    }

    [TestMethod]
    public void Merge_CombineSvdRank1IntoACheckpoint_IsTheBestRank1ApproximationOfTheWeightedSum()
    {
        using var dir = new TempDir();
        var first = HandAdapter.Sample();
        var third = HandAdapter.Write(dir.File("third"), ["q_proj", "v_proj"], rank: 4, alpha: 8, rsLora: false, dora: false, seed: 43);
        var sample = ReferenceCheckpoint.SampleTensors();

        Ok("merge", "--model", SampleModels.Model, "--adapter", $"{first.Directory}={W1}", "--adapter", $"{third.Directory}={W2}",
            "--combine", "svd", "--rank", "1", "--out", dir.File("out"));

        using var merged = SafetensorsFile.Open(dir.File("out/model.safetensors"));
        var sums = WeightedSum(sample, (first, W1), (third, W2));
        Assert.HasCount(8, sums);
        foreach (var (name, sum) in sums)
        {
            float[] w = sample[name];
            var shape = merged.Get(name).Shape;
            int rows = (int)shape[0], cols = (int)shape[1];
            var delta = sum.Select((x, i) => x - w[i]).ToArray();
            var rank1 = PeftReference.Rank1(delta, rows, cols);
            var exact = rank1.Select((x, i) => w[i] + x).ToArray();
            var values = PeftReference.Floats(merged.GetBytes(merged.Get(name)));
            var (maxAbs, _) = PeftReference.Compare(values, exact);
            double deltaScale = rank1.Max(Math.Abs);
            Assert.IsLessThan(1e-5 * deltaScale + 1e-6, maxAbs, $"{name}: max |merged − (W + rank-1 truncation)| = {maxAbs:G3} (truncation scale {deltaScale:G3})");
            var (fullSumGap, _) = PeftReference.Compare(values, sum);
            Assert.IsGreaterThan(1e-3, fullSumGap, $"{name}: the truncation must differ from the untruncated sum, or this test proves nothing");
        }
    }

    [TestMethod]
    public void Merge_CombineCatWithoutModel_WritesAnAdapterWhoseUpdateIsTheWeightedSum()
    {
        using var dir = new TempDir();
        var first = HandAdapter.Sample();
        var third = HandAdapter.Write(dir.File("third"), ["q_proj", "v_proj"], rank: 4, alpha: 8, rsLora: false, dora: false, seed: 47);
        var sample = ReferenceCheckpoint.SampleTensors();

        Ok("merge", "--adapter", $"{first.Directory}={W1}", "--adapter", $"{third.Directory}={W2}", "--combine", "cat", "--out", dir.File("combined"));

        // Read the new adapter as PEFT would: its config's r / lora_alpha / use_rslora and its lora_A / lora_B tensors.
        using var config = JsonDocument.Parse(File.ReadAllText(dir.File("combined/adapter_config.json")));
        int rank = config.RootElement.GetProperty("r").GetInt32();
        double alpha = config.RootElement.GetProperty("lora_alpha").GetDouble();
        bool rsLora = config.RootElement.TryGetProperty("use_rslora", out var rs) && rs.GetBoolean();
        Assert.AreEqual(8 + 4, rank, "cat stacks the ranks");
        double scaling = PeftReference.Scaling(alpha, rank, rsLora);
        using var weights = SafetensorsFile.Open(dir.File("combined/adapter_model.safetensors"));
        var expected = WeightedSum(sample, (first, W1), (third, W2));
        Assert.HasCount(8, expected);
        foreach (var (name, sum) in expected)
        {
            string module = name[..^".weight".Length];
            var a = weights.Get($"base_model.model.{module}.lora_A.weight");
            var b = weights.Get($"base_model.model.{module}.lora_B.weight");
            Assert.AreEqual(DType.F32, a.DType);
            int inF = (int)a.Shape[1], outF = (int)b.Shape[0];
            var delta = PeftReference.Delta(PeftReference.Floats(weights.GetBytes(a)), PeftReference.Floats(weights.GetBytes(b)), rank, inF, outF, scaling);
            float[] w = sample[name];
            var exactDelta = sum.Select((x, i) => x - w[i]).ToArray();
            var (maxAbs, scale) = PeftReference.Compare(PeftReference.ToFloats(delta), exactDelta);
            Assert.IsLessThan(1e-6 * scale, maxAbs, $"{module}: max |scaling·B'A' − Σ wᵢ·ΔWᵢ| = {maxAbs:G3} (scale {scale:G3})");
        }
    }

    [TestMethod]
    public void Merge_IntoAnOnnxModelWithAnonymousWeights_MatchesThemThroughTheBaseCheckpoint()
    {
        using var dir = new TempDir();
        var (first, second) = TwoAdapters(dir);
        var sample = ReferenceCheckpoint.SampleTensors();
        Ok("export", "--model", SampleModels.Model, "--mode", "base", "--out", dir.File("named.onnx"));
        // As torch.onnx writes models: linear weights as anonymous "onnx::MatMul_N" initializers, nodes without names.
        var model = OnnxFile.Load(dir.File("named.onnx"));
        var anonymous = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var t in model.Graph.Initializer.Where(t => t.Dims.Count == 2 && t.Name.EndsWith("_proj.weight", StringComparison.Ordinal)))
        {
            string name = $"onnx::MatMul_{anonymous.Count + 100}";
            anonymous[t.Name] = name;
            t.Name = name;
        }
        foreach (var node in model.Graph.Node)
        {
            node.Name = "";
            for (int i = 0; i < node.Input.Count; i++)
            {
                if (anonymous.TryGetValue(node.Input[i], out var renamed))
                {
                    node.Input[i] = renamed;
                }
            }
        }
        Assert.HasCount(4 * 7, anonymous);
        OnnxFile.Save(model, dir.File("anonymous.onnx"));
        string[] adapters = ["--adapter", $"{first.Directory}={W1}", "--adapter", $"{second.Directory}={W2}"];

        var (without, _, error) = CliHarness.Run(["merge", "--model", dir.File("anonymous.onnx"), .. adapters, "--out", dir.File("unmatched.onnx")]);
        Assert.AreEqual(2, without, "without --base-checkpoint the anonymous weights cannot be matched: " + error);
        Ok(["merge", "--model", dir.File("anonymous.onnx"), .. adapters, "--base-checkpoint", SampleModels.Model, "--out", dir.File("merged.onnx")]);

        var expected = WeightedSumAndSize(sample, (first, W1), (second, W2));
        var initializers = OnnxFile.Load(dir.File("merged.onnx")).Graph.Initializer.ToDictionary(t => t.Name);
        foreach (var (parameter, name) in anonymous)
        {
            var t = initializers[name];
            int inF = (int)t.Dims[0], outF = (int)t.Dims[1];
            var stored = PeftReference.Floats(t.RawData.Span);
            // Stored [in, out] (read by MatMul): compare with the reference's transpose.
            var parameterLayout = new float[stored.Length];
            for (int i = 0; i < inF; i++)
            {
                for (int o = 0; o < outF; o++)
                {
                    parameterLayout[o * inF + i] = stored[i * outF + o];
                }
            }
            if (expected.TryGetValue(parameter, out var exact))
            {
                PeftReference.AssertClose(parameterLayout, exact.Sum, exact.Size, 4, $"{parameter} ({name})");
            }
            else
            {
                CollectionAssert.AreEqual(sample[parameter], parameterLayout, $"{parameter} ({name}) is not adapted");
            }
        }
    }

    [TestMethod]
    [DataRow("bf16", DType.BF16)]
    [DataRow("fp16", DType.F16)]
    public void Merge_WithDtype_WritesEveryTensorRoundedOnceToNearestEven(string option, DType dtype)
    {
        using var dir = new TempDir();
        var first = HandAdapter.Sample();
        var sample = ReferenceCheckpoint.SampleTensors();
        var expected = WeightedSum(sample, (first, W1));
        var format = NearestEven.Of(dtype);

        Ok("merge", "--model", SampleModels.Model, "--adapter", $"{first.Directory}={W1}", "--dtype", option, "--out", dir.File("out"));

        using var merged = SafetensorsFile.Open(dir.File("out/model.safetensors"));
        int exactCount = 0, total = 0;
        foreach (var t in merged.Tensors)
        {
            Assert.AreEqual(dtype, t.DType, t.Name);
            var bytes = merged.GetBytes(t);
            bool adapted = expected.TryGetValue(t.Name, out var exact);
            for (int i = 0; i < t.ElementCount; i++)
            {
                ushort actual = BinaryPrimitives.ReadUInt16LittleEndian(bytes[(i * 2)..]);
                ushort reference = format.Encode(adapted ? (float)exact![i] : sample[t.Name][i]);
                if (actual == reference)
                {
                    exactCount += adapted ? 1 : 0;
                    total += adapted ? 1 : 0;
                    continue;
                }
                // An adapted value may sit on a rounding boundary that the fp32 intermediate lands on either side of.
                Assert.IsTrue(adapted && Math.Abs(actual - reference) == 1,
                    $"{t.Name}[{i}]: 0x{actual:X4}, round-to-nearest-even of the {(adapted ? "fp64 merged" : "original")} value gives 0x{reference:X4}");
                total++;
            }
        }
        Assert.IsGreaterThan(0.999 * total, exactCount, $"{exactCount} of {total} merged values are exactly the reference's bits");
    }

    private static string Ok(params string[] args)
    {
        var (code, stdout, stderr) = CliHarness.Run(args);
        Assert.AreEqual(0, code, $"merge-export {string.Join(' ', args)}: {stderr}{stdout}");
        return stdout;
    }
}
