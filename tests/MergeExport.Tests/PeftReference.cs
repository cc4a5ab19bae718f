using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using Microsoft.ML.OnnxRuntime;
using OnnxLora.Core;
using OnnxLora.Core.Safetensors;

namespace OnnxLora.MergeExport.Tests;

/// <summary>
/// fp64 reference merges written from PEFT's published formulas (peft/tuners/lora/layer.py), sharing no code with
/// OnnxLora's merge: scaling = lora_alpha / r, or lora_alpha / √r with use_rslora; ΔW = scaling · B·A
/// (B [out, r], A [r, in]); DoRA W' = m ⊙ (W + ΔW) / ‖W + ΔW‖ with the 2-norm over each output row; several
/// adapters (merge-export's default combination) W + Σ wᵢ·ΔWᵢ; and a rank-k truncation by power iteration.
/// </summary>
internal static class PeftReference
{
    public static double Scaling(double alpha, int r, bool rsLora) => rsLora ? alpha / Math.Sqrt(r) : alpha / r;

    /// <summary>scaling · B·A, [out, in] row-major.</summary>
    public static double[] Delta(float[] a, float[] b, int r, int inFeatures, int outFeatures, double scaling)
    {
        var delta = new double[outFeatures * inFeatures];
        for (int o = 0; o < outFeatures; o++)
        {
            for (int i = 0; i < inFeatures; i++)
            {
                double sum = 0;
                for (int k = 0; k < r; k++)
                {
                    sum += (double)b[o * r + k] * a[k * inFeatures + i];
                }
                delta[o * inFeatures + i] = scaling * sum;
            }
        }
        return delta;
    }

    /// <summary>DoRA: m[o] · (W + ΔW)[o, :] / ‖(W + ΔW)[o, :]‖.</summary>
    public static double[] Dora(float[] w, double[] delta, float[] magnitude, int outFeatures, int inFeatures)
    {
        var merged = new double[w.Length];
        for (int o = 0; o < outFeatures; o++)
        {
            double sumSq = 0;
            for (int i = 0; i < inFeatures; i++)
            {
                double v = w[o * inFeatures + i] + delta[o * inFeatures + i];
                sumSq += v * v;
            }
            double norm = Math.Sqrt(sumSq);
            for (int i = 0; i < inFeatures; i++)
            {
                merged[o * inFeatures + i] = magnitude[o] * (w[o * inFeatures + i] + delta[o * inFeatures + i]) / norm;
            }
        }
        return merged;
    }

    /// <summary>The size of DoRA's terms for a rounding bound: |m[o]| / ‖(W + ΔW)[o, :]‖ · (|W| + |ΔW|).</summary>
    public static double[] DoraTermSize(float[] w, double[] delta, float[] magnitude, int outFeatures, int inFeatures)
    {
        var size = new double[w.Length];
        for (int o = 0; o < outFeatures; o++)
        {
            double sumSq = 0;
            for (int i = 0; i < inFeatures; i++)
            {
                double v = w[o * inFeatures + i] + delta[o * inFeatures + i];
                sumSq += v * v;
            }
            double factor = Math.Abs(magnitude[o]) / Math.Sqrt(sumSq);
            for (int i = 0; i < inFeatures; i++)
            {
                size[o * inFeatures + i] = factor * (Math.Abs(w[o * inFeatures + i]) + Math.Abs(delta[o * inFeatures + i]));
            }
        }
        return size;
    }

    /// <summary>The best rank-1 approximation σ₁·u₁·v₁ᵀ of M [rows, cols], by power iteration on MᵀM.</summary>
    public static double[] Rank1(double[] m, int rows, int cols)
    {
        var random = new Random(3);
        var v = Enumerable.Range(0, cols).Select(_ => random.NextDouble() - 0.5).ToArray();
        var mv = new double[rows];
        for (int iteration = 0; iteration < 5000; iteration++)
        {
            MultiplyInto(m, rows, cols, v, mv);
            var next = new double[cols];
            for (int r = 0; r < rows; r++)
            {
                for (int c = 0; c < cols; c++)
                {
                    next[c] += m[r * cols + c] * mv[r];
                }
            }
            double norm = Math.Sqrt(next.Sum(x => x * x));
            double change = 0;
            for (int c = 0; c < cols; c++)
            {
                next[c] /= norm;
                change = Math.Max(change, Math.Abs(next[c] - v[c]));
            }
            v = next;
            if (change < 1e-15)
            {
                break;
            }
        }
        MultiplyInto(m, rows, cols, v, mv);
        var result = new double[rows * cols];
        for (int r = 0; r < rows; r++)
        {
            for (int c = 0; c < cols; c++)
            {
                result[r * cols + c] = mv[r] * v[c];
            }
        }
        return result;
    }

    /// <summary>Max |a − b| over elements, and the largest |b|.</summary>
    public static (double MaxAbs, double Scale) Compare(ReadOnlySpan<float> actual, ReadOnlySpan<double> expected)
    {
        Assert.AreEqual(expected.Length, actual.Length, "element counts");
        double max = 0, scale = 0;
        for (int i = 0; i < actual.Length; i++)
        {
            max = Math.Max(max, Math.Abs(actual[i] - expected[i]));
            scale = Math.Max(scale, Math.Abs(expected[i]));
        }
        return (max, scale);
    }

    /// <summary>
    /// Each fp32 value within <paramref name="ulps"/> fp32 units in the last place of <paramref name="magnitude"/> (the
    /// size of the terms that were summed, e.g. |W| + Σ|wᵢ·ΔWᵢ|) from the fp64 reference: rounding-order differences
    /// only, also where the terms cancel to a small result.
    /// </summary>
    public static void AssertClose(ReadOnlySpan<float> actual, ReadOnlySpan<double> expected, ReadOnlySpan<double> magnitude, double ulps, string what)
    {
        Assert.AreEqual(expected.Length, actual.Length, $"{what}: element counts");
        for (int i = 0; i < actual.Length; i++)
        {
            double ulp = Math.ScaleB(Math.Max(magnitude[i], float.Epsilon), -23);
            if (!(Math.Abs(actual[i] - expected[i]) <= ulps * ulp))
            {
                Assert.Fail($"{what}[{i}]: {actual[i]:R}, the fp64 reference is {expected[i]:R} (off by {Math.Abs(actual[i] - expected[i]) / ulp:F1} ulp of the terms' size {magnitude[i]:G3})");
            }
        }
    }

    public static byte[] Bytes(float[] values) => MemoryMarshal.AsBytes(values.AsSpan()).ToArray();

    public static float[] Floats(ReadOnlySpan<byte> bytes) => MemoryMarshal.Cast<byte, float>(bytes).ToArray();

    public static float[] ToFloats(double[] values) => values.Select(v => (float)v).ToArray();

    private static void MultiplyInto(double[] m, int rows, int cols, double[] v, double[] result)
    {
        for (int r = 0; r < rows; r++)
        {
            double sum = 0;
            for (int c = 0; c < cols; c++)
            {
                sum += m[r * cols + c] * v[c];
            }
            result[r] = sum;
        }
    }
}

/// <summary>One adapted module of a <see cref="HandAdapter"/>: A [r, in], B [out, r], DoRA's magnitude [out] or null.</summary>
internal sealed record HandModule(string Path, float[] A, float[] B, float[]? Magnitude, int InFeatures, int OutFeatures);

/// <summary>
/// A PEFT LoRA adapter for the sample checkpoint written by hand as PEFT saves one (adapter_config.json with PEFT's
/// field names, adapter_model.safetensors with PEFT's keys, fp32), with random A and B and, for DoRA, a magnitude
/// of 0.75–1.25 times the base row norms, so every option visibly changes the merge.
/// </summary>
internal sealed record HandAdapter(string Directory, int Rank, double Alpha, bool RsLora, bool Dora, IReadOnlyList<HandModule> Modules)
{
    public double Scaling => PeftReference.Scaling(Alpha, Rank, RsLora);

    public static HandAdapter Write(string directory, string[] targets, int rank, double alpha, bool rsLora, bool dora, int seed)
    {
        var random = new Random(seed);
        float[] Fill(int count, double scale) => Enumerable.Range(0, count).Select(_ => (float)((random.NextDouble() * 2 - 1) * scale)).ToArray();
        using var checkpoint = SafetensorsFile.Open(Path.Combine(SampleModels.Model, "model.safetensors"));
        var modules = new List<HandModule>();
        foreach (var tensor in checkpoint.Tensors.Where(t => targets.Any(n => t.Name.EndsWith("." + n + ".weight", StringComparison.Ordinal))))
        {
            int outF = (int)tensor.Shape[0], inF = (int)tensor.Shape[1];
            float[]? magnitude = null;
            if (dora)
            {
                var w = PeftReference.Floats(checkpoint.GetBytes(tensor));
                magnitude = new float[outF];
                for (int o = 0; o < outF; o++)
                {
                    double norm = Math.Sqrt(Enumerable.Range(0, inF).Sum(i => (double)w[o * inF + i] * w[o * inF + i]));
                    magnitude[o] = (float)(norm * (0.75 + 0.5 * random.NextDouble()));
                }
            }
            modules.Add(new HandModule(tensor.Name[..^".weight".Length], Fill(rank * inF, 0.1), Fill(outF * rank, 0.1), magnitude, inF, outF));
        }
        Assert.IsNotEmpty(modules, "the targets match modules of the sample");

        System.IO.Directory.CreateDirectory(directory);
        string targetList = string.Join(", ", targets.Select(t => $"\"{t}\""));
        File.WriteAllText(Path.Combine(directory, "adapter_config.json"), string.Create(CultureInfo.InvariantCulture, $$"""
            {
              "peft_type": "LORA",
              "task_type": "CAUSAL_LM",
              "base_model_name_or_path": "tiny-llama",
              "r": {{rank}},
              "lora_alpha": {{alpha}},
              "lora_dropout": 0.0,
              "target_modules": [{{targetList}}],
              "use_rslora": {{(rsLora ? "true" : "false")}},
              "use_dora": {{(dora ? "true" : "false")}},
              "fan_in_fan_out": false,
              "bias": "none",
              "init_lora_weights": true,
              "modules_to_save": null,
              "rank_pattern": {},
              "alpha_pattern": {}
            }
            """));
        var tensors = new List<(TensorSpec, ReadOnlyMemory<byte>)>();
        foreach (var m in modules)
        {
            tensors.Add((new TensorSpec($"base_model.model.{m.Path}.lora_A.weight", DType.F32, [rank, m.InFeatures]), PeftReference.Bytes(m.A)));
            tensors.Add((new TensorSpec($"base_model.model.{m.Path}.lora_B.weight", DType.F32, [m.OutFeatures, rank]), PeftReference.Bytes(m.B)));
            if (m.Magnitude is not null)
            {
                tensors.Add((new TensorSpec($"base_model.model.{m.Path}.lora_magnitude_vector", DType.F32, [m.OutFeatures]), PeftReference.Bytes(m.Magnitude)));
            }
        }
        SafetensorsWriter.Save(Path.Combine(directory, "adapter_model.safetensors"), tensors, new Dictionary<string, string> { ["format"] = "pt" });
        return new HandAdapter(directory, rank, alpha, rsLora, dora, modules);
    }

    /// <summary>The committed sample adapter (models/tiny-llama-lora: LoRA r 8, alpha 16, q_proj and v_proj), read from its files.</summary>
    public static HandAdapter Sample()
    {
        using var config = JsonDocument.Parse(File.ReadAllText(Path.Combine(SampleModels.Adapter, "adapter_config.json")));
        int rank = config.RootElement.GetProperty("r").GetInt32();
        double alpha = config.RootElement.GetProperty("lora_alpha").GetDouble();
        Assert.IsFalse(config.RootElement.GetProperty("use_rslora").GetBoolean());
        Assert.IsFalse(config.RootElement.GetProperty("use_dora").GetBoolean());
        using var weights = SafetensorsFile.Open(Path.Combine(SampleModels.Adapter, "adapter_model.safetensors"));
        var modules = new List<HandModule>();
        foreach (var a in weights.Tensors.Where(t => t.Name.EndsWith(".lora_A.weight", StringComparison.Ordinal)))
        {
            string path = a.Name["base_model.model.".Length..^".lora_A.weight".Length];
            var b = weights.Get($"base_model.model.{path}.lora_B.weight");
            Assert.AreEqual(DType.F32, a.DType);
            modules.Add(new HandModule(path, PeftReference.Floats(weights.GetBytes(a)), PeftReference.Floats(weights.GetBytes(b)), null, (int)a.Shape[1], (int)b.Shape[0]));
        }
        return new HandAdapter(SampleModels.Adapter, rank, alpha, false, false, modules);
    }
}

/// <summary>A checkpoint folder like the sample's with some tensors replaced (the other files copied).</summary>
internal static class ReferenceCheckpoint
{
    /// <summary>The sample's tensors as fp32 arrays by name.</summary>
    public static Dictionary<string, float[]> SampleTensors()
    {
        using var file = SafetensorsFile.Open(Path.Combine(SampleModels.Model, "model.safetensors"));
        Assert.IsTrue(file.Tensors.All(t => t.DType == DType.F32), "the sample checkpoint is fp32");
        return file.Tensors.ToDictionary(t => t.Name, t => PeftReference.Floats(file.GetBytes(t)), StringComparer.Ordinal);
    }

    public static string Write(string directory, IReadOnlyDictionary<string, float[]> replaced)
    {
        System.IO.Directory.CreateDirectory(directory);
        foreach (string f in System.IO.Directory.GetFiles(SampleModels.Model).Where(f => Path.GetFileName(f) != "model.safetensors"))
        {
            File.Copy(f, Path.Combine(directory, Path.GetFileName(f)));
        }
        using var sample = SafetensorsFile.Open(Path.Combine(SampleModels.Model, "model.safetensors"));
        var tensors = sample.Tensors.Select(t => (t.Spec, (ReadOnlyMemory<byte>)(replaced.TryGetValue(t.Name, out var v) ? PeftReference.Bytes(v) : sample.GetBytes(t).ToArray()))).ToList();
        SafetensorsWriter.Save(Path.Combine(directory, "model.safetensors"), tensors);
        return directory;
    }
}

/// <summary>Runs an exported LLaMA .onnx file in ONNX Runtime (CPU) and returns its logits.</summary>
internal static class OnnxLogits
{
    public const int Batch = 2;
    public const int Sequence = 12;

    /// <summary>Random ids in [1, vocab) for [2, 12]; the second row left-padded by 3.</summary>
    public static (long[] Ids, long[] Mask) Inputs(int vocab)
    {
        var random = new Random(5);
        long[] ids = Enumerable.Range(0, Batch * Sequence).Select(_ => (long)random.Next(1, vocab)).ToArray();
        long[] mask = Enumerable.Range(0, Batch * Sequence).Select(i => i >= Sequence && i < Sequence + 3 ? 0L : 1L).ToArray();
        return (ids, mask);
    }

    public static float[] Run(string model, int vocab = 512)
    {
        var (ids, mask) = Inputs(vocab);
        using var options = new SessionOptions { LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR, IntraOpNumThreads = 1 };
        using var session = new InferenceSession(model, options);
        using var idsValue = OrtValue.CreateTensorValueFromMemory(ids, [Batch, Sequence]);
        using var maskValue = OrtValue.CreateTensorValueFromMemory(mask, [Batch, Sequence]);
        using var runOptions = new RunOptions();
        using var outputs = session.Run(runOptions, ["input_ids", "attention_mask"], [idsValue, maskValue], ["logits"]);
        return outputs[0].GetTensorDataAsSpan<float>().ToArray();
    }

    public static double MaxAbsDiff(float[] a, float[] b)
    {
        Assert.HasCount(b.Length, a);
        double max = 0;
        for (int i = 0; i < a.Length; i++)
        {
            double d = Math.Abs((double)a[i] - b[i]);
            max = double.IsNaN(d) ? double.PositiveInfinity : Math.Max(max, d);
        }
        return max;
    }
}
