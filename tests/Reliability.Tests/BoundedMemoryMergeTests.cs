using System.Globalization;
using System.Runtime.InteropServices;
using Onnx;
using OnnxLora.Core;
using OnnxLora.Core.Onnx;
using OnnxLora.Core.Peft;
using OnnxLora.Core.Safetensors;

namespace OnnxLora.Reliability;

/// <summary>
/// The merges stream: `merge-export merge` of a checkpoint (and of an ONNX model with external data) over twice the size of
/// a memory cap this test sets peaks under the cap. The peak is the child process's own resident high-water mark (GNU time's
/// %M, the kernel's maxrss), measured from a fresh process, so mapped pages, native buffers and the runtime all count: a
/// merge that held the input (or even half of it) would exceed it, so the bound cannot pass vacuously. The merged values
/// are spot-checked against W + (alpha/r)·B·A in fp64.
/// </summary>
[TestClass]
public sealed class BoundedMemoryMergeTests
{
    private const int Dim = 2048, Layers = 20, Rank = 8;
    private const double Alpha = 16;
    private const long CapKiB = 150 * 1024;
    private const long TensorBytes = (long)Dim * Dim * 4;

    private static string Module(int layer) => $"model.layers.{layer}.self_attn.q_proj";

    /// <summary>The base weight's element <paramref name="i"/> in layer <paramref name="layer"/>: cheap to generate and to recompute.</summary>
    private static float BaseValue(int layer, long i) => ((((i * 7) + (layer * 13)) % 1999) - 999) * 1e-3f;

    /// <summary>Writes a layer's weight (fp32 [Dim, Dim], [out, in]) in 4 MiB chunks through <paramref name="write"/>.</summary>
    private static void WriteBase(int layer, Action<ReadOnlySpan<byte>> write)
    {
        var chunk = new float[1 << 20];
        for (long done = 0; done < (long)Dim * Dim; done += chunk.Length)
        {
            for (int k = 0; k < chunk.Length; k++)
            {
                chunk[k] = BaseValue(layer, done + k);
            }
            write(MemoryMarshal.AsBytes(chunk.AsSpan()));
        }
    }

    /// <summary>A LoRA adapter (r 8, alpha 16) on every layer's q_proj; returns its folder and each module's A [r, in], B [out, r].</summary>
    private static (string Dir, Dictionary<string, (float[] A, float[] B)> Factors) Adapter(string dir)
    {
        var rng = new Random(7);
        float[] Rand(int n) => Enumerable.Range(0, n).Select(_ => (float)((rng.NextDouble() * 2) - 1)).ToArray();
        var factors = new Dictionary<string, (float[] A, float[] B)>(StringComparer.Ordinal);
        var tensors = new List<(TensorSpec, ReadOnlyMemory<byte>)>();
        for (int l = 0; l < Layers; l++)
        {
            var (a, b) = (Rand(Rank * Dim), Rand(Dim * Rank));
            factors[Module(l)] = (a, b);
            tensors.Add(PeftAdapter.EncodeTensor(PeftAdapter.KeyFor(Module(l), AdapterModuleKind.Lora, AdapterTensorRole.LoraA), [Rank, Dim], a));
            tensors.Add(PeftAdapter.EncodeTensor(PeftAdapter.KeyFor(Module(l), AdapterModuleKind.Lora, AdapterTensorRole.LoraB), [Dim, Rank], b));
        }
        var config = new PeftAdapterConfig { R = Rank, Alpha = Alpha, TargetModules = TargetModules.FromList(["q_proj"]) };
        PeftAdapter.Save(dir, config, tensors);
        return (dir, factors);
    }

    /// <summary>W + (alpha/r)·B·A at (row, col) of a layer, in fp64 from the adapter's factors.</summary>
    private static double Expected(int layer, (float[] A, float[] B) f, int row, int col)
    {
        double sum = 0;
        for (int k = 0; k < Rank; k++)
        {
            sum += (double)f.B[(row * Rank) + k] * f.A[(k * Dim) + col];
        }
        return BaseValue(layer, ((long)row * Dim) + col) + (Alpha / Rank * sum);
    }

    private static IEnumerable<(int Row, int Col)> Samples(int layer)
    {
        var rng = new Random(layer);
        for (int s = 0; s < 40; s++)
        {
            yield return (rng.Next(Dim), rng.Next(Dim));
        }
    }

    /// <summary>Runs `merge-export merge` and checks it succeeded under the cap.</summary>
    private static void MergeUnderTheCap(string model, string adapter, string output, long inputBytes)
    {
        if (!Tool.CanMeasurePeakMemory)
        {
            Assert.Inconclusive("/usr/bin/time is missing (bash scripts/setup.sh installs it: apt-get install time)");
        }
        Assert.IsGreaterThan(2 * CapKiB * 1024, inputBytes, "the input is over twice the cap");
        var run = Tool.Run(["merge", "--model", model, "--adapter", adapter, "--out", output], TimeSpan.FromMinutes(3), measurePeakMemory: true);
        Assert.AreEqual(0, run.ExitCode, run.ToString());
        Console.WriteLine($"merge of {inputBytes >> 20} MiB: peak resident {run.PeakRssKiB} KiB, {run.Elapsed.TotalSeconds:F1} s");
        Assert.IsNotNull(run.PeakRssKiB, "GNU time wrote no peak");
        Assert.IsLessThan(CapKiB, run.PeakRssKiB.Value, $"peak resident memory {run.PeakRssKiB} KiB merging {inputBytes >> 20} MiB");
    }

    [TestMethod]
    public void CheckpointMerge_OfACheckpointTwiceTheCap_PeaksUnderTheCap()
    {
        using var dir = new TempDir();
        string ckpt = dir.File("ckpt");
        Directory.CreateDirectory(ckpt);
        var specs = Enumerable.Range(0, Layers).Select(l => new TensorSpec(Module(l) + ".weight", DType.F32, [Dim, Dim])).ToList();
        using (var writer = SafetensorsWriter.Create(Path.Combine(ckpt, "model.safetensors"), specs))
        {
            for (int l = 0; l < Layers; l++)
            {
                WriteBase(l, bytes => writer.Write(specs[l].Name, bytes));
            }
            writer.Commit();
        }
        var (adapter, factors) = Adapter(dir.File("adapter"));
        string output = dir.File("merged");

        MergeUnderTheCap(ckpt, adapter, output, new FileInfo(Path.Combine(ckpt, "model.safetensors")).Length);

        using var merged = SafetensorsFile.Open(Path.Combine(output, "model.safetensors"));
        for (int l = 0; l < Layers; l++)
        {
            var t = merged.Get(specs[l].Name);
            foreach (var (row, col) in Samples(l))
            {
                float actual = BitConverter.ToSingle(merged.GetBytes(t, (((long)row * Dim) + col) * 4, 4));
                Assert.AreEqual(Expected(l, factors[Module(l)], row, col), actual, 1e-6, $"layer {l} ({row}, {col})");
            }
        }
    }

    [TestMethod]
    public void OnnxMerge_OfAModelWithExternalDataTwiceTheCap_PeaksUnderTheCap()
    {
        using var dir = new TempDir();
        string model = dir.File("model.onnx");
        var builder = new OnnxGraphBuilder();
        string h = builder.AddInput("x", DType.F32, 1, Dim);
        using (var data = new FileStream(model + ".data", FileMode.CreateNew, FileAccess.Write))
        {
            for (int l = 0; l < Layers; l++)
            {
                // nn.Linear's weight [out, in] under its parameter name, transposed before the MatMul.
                var tensor = new TensorProto { Name = Module(l) + ".weight", DataType = (int)TensorProto.Types.DataType.Float, DataLocation = TensorProto.Types.DataLocation.External };
                tensor.Dims.Add([Dim, Dim]);
                tensor.ExternalData.Add(new StringStringEntryProto { Key = "location", Value = "model.onnx.data" });
                tensor.ExternalData.Add(new StringStringEntryProto { Key = "offset", Value = data.Position.ToString(CultureInfo.InvariantCulture) });
                tensor.ExternalData.Add(new StringStringEntryProto { Key = "length", Value = TensorBytes.ToString(CultureInfo.InvariantCulture) });
                builder.AddInitializer(tensor);
                string wt = builder.AddNode("Transpose", [tensor.Name], $"/layers.{l}/Transpose", OnnxAttributes.Ints("perm", [1, 0]));
                h = builder.AddNode("MatMul", [h, wt], $"/layers.{l}/MatMul");
                WriteBase(l, bytes => data.Write(bytes));
            }
        }
        builder.AddNode("Identity", [h], ["y"], "/out");
        builder.AddOutput("y", DType.F32, 1, Dim);
        File.WriteAllBytes(model, Google.Protobuf.MessageExtensions.ToByteArray(builder.Build()));
        var (adapter, factors) = Adapter(dir.File("adapter"));
        string output = dir.File("merged.onnx");
        long inputBytes = new FileInfo(model + ".data").Length;

        MergeUnderTheCap(model, adapter, output, inputBytes);

        Assert.AreEqual(inputBytes, new FileInfo(output + ".data").Length, "the output data file keeps the input's layout");
        var written = OnnxFile.Load(output, new OnnxLoadOptions { LoadExternalData = false });
        using var files = OnnxExternalDataFiles.Open(output, written);
        var bytes = new byte[4];
        for (int l = 0; l < Layers; l++)
        {
            var range = files.RangeOf(written.Graph.Initializer.Single(t => t.Name == Module(l) + ".weight"))!;
            foreach (var (row, col) in Samples(l))
            {
                files.Read(range, (((long)row * Dim) + col) * 4, bytes);
                Assert.AreEqual(Expected(l, factors[Module(l)], row, col), BitConverter.ToSingle(bytes), 1e-6, $"layer {l} ({row}, {col})");
            }
        }
    }
}
