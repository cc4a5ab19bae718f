using System.Globalization;
using OnnxLora.Core;
using OnnxLora.Core.Onnx;
using OnnxLora.Core.Peft;
using OnnxLora.Core.Safetensors;
using OnnxLora.Testing;

namespace OnnxLora.Reliability;

/// <summary>
/// Export streams the weights: exporting a checkpoint several times larger than a memory bound the test sets
/// for itself stays under it. The bound is on the growth of the tool's peak resident memory (GNU time's
/// maximum RSS) over the same tool exporting the 3 MB sample model, so the runtime and libtorch it loads
/// cancel out. Materialising the model — or any copy of its weights — would exceed it: the checkpoint and
/// the written data are each more than twice the bound.
/// </summary>
[TestClass]
public sealed class BoundedMemoryExportTests
{
    /// <summary>How much more the large export may hold resident than the tiny one.</summary>
    private const long GrowthBoundBytes = 150L << 20;

    private const int Hidden = 1024, Vocab = 16000, Rank = 8;

    /// <summary>LLaMA-shaped: hidden 1024, intermediate 2816, 4 layers, 8 heads / 4 KV heads, vocab 16000: 79 M parameters, 317 MB in fp32.</summary>
    private static readonly SyntheticLlama.Shape Shape = new(Hidden, 2816, 4, 8, 4, Vocab);

    [TestMethod]
    public void Export_MergedCheckpointTwiceTheBound_StaysUnderTheBound()
    {
        if (!Tool.CanMeasurePeakMemory)
        {
            Assert.Inconclusive("/usr/bin/time is missing (bash scripts/setup.sh installs it: apt-get install time)");
        }
        using var dir = new TempDir();
        string model = dir.File("model"), adapter = dir.File("adapter");
        SyntheticLlama.WriteCheckpoint(model, Shape, DType.F32);
        SyntheticLlama.WriteAdapter(adapter, Shape, Rank, alpha: 16, ["q_proj", "gate_proj"]);
        AssertPeakGrowthUnderTheBound(dir, model, ["export", "--model", model, "--adapter", adapter, "--mode", "merged", "--external-data", "always", "--out", dir.File("large.onnx")],
            dir.File("large.onnx.data"));

        // The streamed bytes are right: a merged projection and the (block-transposed) lm_head against fp64 sums of the inputs.
        var exported = OnnxFile.Load(dir.File("large.onnx"), new OnnxLoadOptions { LoadExternalData = false });
        using var checkpoint = SafetensorsFile.Open(Path.Combine(model, "model.safetensors"));
        using var lora = PeftAdapter.Load(adapter);
        float[] w = checkpoint.ReadSingles("model.layers.1.self_attn.q_proj.weight");
        float[] a = lora.Weights.ReadSingles(PeftAdapter.KeyPrefix + "model.layers.1.self_attn.q_proj.lora_A.weight");
        float[] b = lora.Weights.ReadSingles(PeftAdapter.KeyPrefix + "model.layers.1.self_attn.q_proj.lora_B.weight");
        float[] q = Initializer(exported, dir.File("large.onnx.data"), "model.layers.1.self_attn.q_proj.weight", Hidden, Hidden);
        float[] head = Initializer(exported, dir.File("large.onnx.data"), "lm_head.weight", Hidden, Vocab);
        float[] headStored = checkpoint.ReadSingles("lm_head.weight");
        double scaling = 16.0 / Rank;
        for (int i = 0; i < 4000; i++)
        {
            int r = (int)(i * 7919L % Hidden), c = (int)(i * 104729L % Hidden);
            double expected = w[(r * Hidden) + c];
            for (int k = 0; k < Rank; k++)
            {
                expected += scaling * b[(r * Rank) + k] * (double)a[(k * Hidden) + c];
            }
            Assert.AreEqual(expected, q[(c * Hidden) + r], 1e-6, $"q_proj W'[{r}, {c}] (stored transposed)");
            int v = (int)(i * 15485863L % Vocab);
            Assert.AreEqual(headStored[(v * Hidden) + c], head[(c * Vocab) + v], $"lm_head W[{v}, {c}] (stored transposed)");
        }
    }

    /// <summary>
    /// A GenAI folder (with-past graph) in unmerged mode: the base weights stream from the checkpoint and the LoRA factors from the
    /// adapter file, under the same bound; the factors and a base weight are the files' values, transposed.
    /// </summary>
    [TestMethod]
    public void ExportGenAi_UnmergedCheckpointTwiceTheBound_StaysUnderTheBound()
    {
        if (!Tool.CanMeasurePeakMemory)
        {
            Assert.Inconclusive("/usr/bin/time is missing (bash scripts/setup.sh installs it: apt-get install time)");
        }
        using var dir = new TempDir();
        string model = dir.File("model"), adapter = dir.File("adapter"), genai = dir.File("genai");
        SyntheticLlama.WriteCheckpoint(model, Shape, DType.F32);
        foreach (string file in new[] { "tokenizer.json", "tokenizer_config.json" })
        {
            File.Copy(Path.Combine(Tool.TinyLlama, file), Path.Combine(model, file));
        }
        SyntheticLlama.WriteAdapter(adapter, Shape, Rank, alpha: 16, ["q_proj", "gate_proj"]);

        AssertPeakGrowthUnderTheBound(dir, model, ["export", "--model", model, "--adapter", adapter, "--mode", "unmerged", "--external-data", "always", "--genai", genai],
            Path.Combine(genai, "model.onnx.data"));

        string onnx = Path.Combine(genai, "model.onnx"), data = onnx + ".data";
        var exported = OnnxFile.Load(onnx, new OnnxLoadOptions { LoadExternalData = false });
        Assert.IsTrue(exported.Graph.Input.Any(i => i.Name == "past_key_values.0.key"), "the GenAI graph has the key/value cache");
        using var checkpoint = SafetensorsFile.Open(Path.Combine(model, "model.safetensors"));
        using var lora = PeftAdapter.Load(adapter);
        string key = PeftAdapter.KeyPrefix + "model.layers.1.self_attn.q_proj";
        AssertTransposed(checkpoint.ReadSingles("model.layers.1.self_attn.q_proj.weight"), Initializer(exported, data, "model.layers.1.self_attn.q_proj.weight", Hidden, Hidden), Hidden, Hidden, "q_proj W");
        AssertTransposed(lora.Weights.ReadSingles(key + ".lora_A.weight"), Initializer(exported, data, key + ".lora_A.weight", Hidden, Rank), Rank, Hidden, "q_proj A");
        AssertTransposed(lora.Weights.ReadSingles(key + ".lora_B.weight"), Initializer(exported, data, key + ".lora_B.weight", Rank, Hidden), Hidden, Rank, "q_proj B");
    }

    /// <summary>Runs the tool on <paramref name="args"/> and on the 3 MB sample; the peak RSS may grow by less than the bound while the checkpoint and the data written are each over twice it.</summary>
    private static void AssertPeakGrowthUnderTheBound(TempDir dir, string model, string[] args, string dataFile)
    {
        long checkpointBytes = new FileInfo(Path.Combine(model, "model.safetensors")).Length;
        var tiny = Tool.Run(["export", "--model", Tool.TinyLlama, "--mode", "base", "--external-data", "always", "--out", dir.File("tiny.onnx")],
            TimeSpan.FromMinutes(2), measurePeakMemory: true);
        var large = Tool.Run(args, TimeSpan.FromMinutes(2), measurePeakMemory: true);

        Assert.AreEqual(0, tiny.ExitCode, tiny.ToString());
        Assert.AreEqual(0, large.ExitCode, large.ToString());
        long written = new FileInfo(dataFile).Length;
        Assert.IsGreaterThan(2 * GrowthBoundBytes, checkpointBytes, "the checkpoint must dwarf the bound");
        Assert.IsGreaterThan(2 * GrowthBoundBytes, written, "the written data must dwarf the bound");
        long growth = (large.PeakRssKiB!.Value - tiny.PeakRssKiB!.Value) * 1024;
        Console.WriteLine($"peak RSS: tiny export {tiny.PeakRssKiB} KiB, {checkpointBytes >> 20} MB export {large.PeakRssKiB} KiB (growth {growth >> 20} MB, bound {GrowthBoundBytes >> 20} MB)");
        Assert.IsLessThan(GrowthBoundBytes, growth, $"peak RSS grew by {growth} bytes exporting a {checkpointBytes}-byte checkpoint");
    }

    /// <summary><paramref name="stored"/> [rows, cols] equals <paramref name="transposed"/> [cols, rows] transposed, bit for bit (fp32 to fp32).</summary>
    private static void AssertTransposed(float[] stored, float[] transposed, int rows, int cols, string what)
    {
        for (int r = 0; r < rows; r++)
        {
            for (int c = 0; c < cols; c++)
            {
                if (stored[(r * cols) + c] != transposed[(c * rows) + r])
                {
                    Assert.Fail($"{what}[{r}, {c}]: stored {stored[(r * cols) + c]}, exported {transposed[(c * rows) + r]}");
                }
            }
        }
    }

    /// <summary>An fp32 initializer [rows, cols] read from the external data file.</summary>
    private static float[] Initializer(Onnx.ModelProto model, string dataFile, string name, int rows, int cols)
    {
        var tensor = model.Graph.Initializer.Single(t => t.Name == name);
        CollectionAssert.AreEqual(new long[] { rows, cols }, tensor.Dims.ToArray(), name);
        long offset = long.Parse(tensor.ExternalData.Single(e => e.Key == "offset").Value, CultureInfo.InvariantCulture);
        var values = new float[rows * cols];
        using var stream = File.OpenRead(dataFile);
        stream.Position = offset;
        stream.ReadExactly(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()));
        return values;
    }
}
