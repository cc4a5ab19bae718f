using OnnxLora.Core;
using OnnxLora.Core.Peft;
using OnnxLora.Core.Safetensors;

namespace OnnxLora.Merge.Tests;

/// <summary>Tiny adapters and checkpoints for the tests, plus fp64 reference formulas written independently of the code under test.</summary>
internal static class TestData
{
    public static string Root { get; } = Path.Combine(Path.GetTempPath(), "onnxlora-merge-tests", Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture));

    public static string NewDir()
    {
        string dir = Path.Combine(Root, Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        return dir;
    }

    public static void DeleteAll()
    {
        if (Directory.Exists(Root))
        {
            Directory.Delete(Root, recursive: true);
        }
    }

    public static float[] Random(int count, int seed, double scale = 1.0)
    {
        var rng = new Random(seed);
        var v = new float[count];
        for (int i = 0; i < count; i++)
        {
            v[i] = (float)((rng.NextDouble() * 2 - 1) * scale);
        }
        return v;
    }

    /// <summary>Writes an adapter folder from named fp32 arrays and opens it.</summary>
    public static PeftAdapter Adapter(PeftAdapterConfig config, params (string Key, long[] Shape, float[] Values)[] tensors) =>
        Adapter(config, DType.F32, tensors);

    public static PeftAdapter Adapter(PeftAdapterConfig config, DType dtype, params (string Key, long[] Shape, float[] Values)[] tensors)
    {
        string dir = Path.Combine(NewDir(), "adapter");
        PeftAdapter.Save(dir, config, tensors.Select(t => PeftAdapter.EncodeTensor(t.Key, t.Shape, t.Values, dtype)).ToList());
        return PeftAdapter.Load(dir);
    }

    public static string Key(string module, string suffix) => PeftAdapter.KeyPrefix + module + suffix;

    /// <summary>A LoRA adapter on one module with given dims; returns the adapter and its A [r,in], B [out,r].</summary>
    public static (PeftAdapter Adapter, float[] A, float[] B) Lora(string module, int r, int inF, int outF, double alpha, int seed,
        bool rslora = false, bool fanInFanOut = false)
    {
        var a = Random(r * inF, seed);
        var b = Random(outF * r, seed + 1);
        var config = new PeftAdapterConfig { R = r, Alpha = alpha, UseRsLora = rslora, FanInFanOut = fanInFanOut, TargetModules = TargetModules.FromList([module]) };
        return (Adapter(config, (Key(module, ".lora_A.weight"), [r, inF], a), (Key(module, ".lora_B.weight"), [outF, r], b)), a, b);
    }

    /// <summary>A LoRA adapter with several modules in one file (same r and alpha): each entry is (module, in, out, embedding); returns A and B per module.</summary>
    public static (PeftAdapter Adapter, Dictionary<string, (float[] A, float[] B)> Factors) MultiLora(int r, double alpha, int seed,
        IReadOnlyList<(string Module, int In, int Out, bool Embedding)> modules, bool rslora = false, bool fanInFanOut = false)
    {
        var factors = new Dictionary<string, (float[] A, float[] B)>(StringComparer.Ordinal);
        var tensors = new List<(string, long[], float[])>();
        int k = 0;
        foreach (var (module, inF, outF, embedding) in modules)
        {
            var a = Random(r * inF, seed + (10 * k));
            var b = Random(outF * r, seed + (10 * k) + 1);
            factors[module] = (a, b);
            tensors.Add((Key(module, embedding ? ".lora_embedding_A" : ".lora_A.weight"), [r, inF], a));
            tensors.Add((Key(module, embedding ? ".lora_embedding_B" : ".lora_B.weight"), [outF, r], b));
            k++;
        }
        var config = new PeftAdapterConfig
        {
            R = r,
            Alpha = alpha,
            UseRsLora = rslora,
            FanInFanOut = fanInFanOut,
            TargetModules = TargetModules.FromList(modules.Select(m => m.Module)),
        };
        return (Adapter(config, [.. tensors]), factors);
    }

    // ---- fp64 references ----

    /// <summary>(L·R)[rows, cols] in fp64 with plain loops.</summary>
    public static double[] Product(float[] l, float[] r, int rows, int k, int cols)
    {
        var p = new double[rows * cols];
        for (int i = 0; i < rows; i++)
        {
            for (int j = 0; j < cols; j++)
            {
                double s = 0;
                for (int t = 0; t < k; t++)
                {
                    s += (double)l[i * k + t] * r[t * cols + j];
                }
                p[i * cols + j] = s;
            }
        }
        return p;
    }

    public static double[] Transposed(double[] m, int rows, int cols)
    {
        var t = new double[m.Length];
        for (int i = 0; i < rows; i++)
        {
            for (int j = 0; j < cols; j++)
            {
                t[j * rows + i] = m[i * cols + j];
            }
        }
        return t;
    }

    public static double[] Scaled(double[] m, double s) => m.Select(x => x * s).ToArray();

    public static double[] Add(float[] w, double[] d) => w.Select((x, i) => x + d[i]).ToArray();

    public static double[] Add(double[] w, double[] d) => w.Select((x, i) => x + d[i]).ToArray();

    /// <summary>Checks |actual − expected| ≤ tol·max(|expected|, scale, 1e-12) element-wise.</summary>
    public static void AssertClose(double[] expected, float[] actual, double tol, string what, double scale = 0)
    {
        Assert.HasCount(expected.Length, actual, what);
        for (int i = 0; i < expected.Length; i++)
        {
            double bound = tol * Math.Max(Math.Max(Math.Abs(expected[i]), scale), 1e-12);
            double err = Math.Abs(actual[i] - expected[i]);
            if (!(err <= bound))
            {
                Assert.Fail($"{what}: element {i}: expected {expected[i]:R}, got {actual[i]:R} (error {err:E2} > {bound:E2})");
            }
        }
    }

    public static double MaxAbs(IEnumerable<double> v) => v.Max(Math.Abs);

    // ---- checkpoints ----

    /// <summary>Writes a single-file or sharded checkpoint from (name, dtype, shape, fp32 values) and a config.json.</summary>
    public static string Checkpoint(IReadOnlyList<IReadOnlyList<(string Name, DType DType, long[] Shape, float[] Values)>> shards)
    {
        string dir = Path.Combine(NewDir(), "ckpt");
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "config.json"), "{\"model_type\": \"llama\"}\n");
        var metadata = new Dictionary<string, string> { ["format"] = "pt" };
        var weightMap = new SortedDictionary<string, string>(StringComparer.Ordinal);
        long total = 0;
        for (int s = 0; s < shards.Count; s++)
        {
            string name = shards.Count == 1 ? SafetensorsCheckpoint.SingleFileName : $"model-{s + 1:00000}-of-{shards.Count:00000}.safetensors";
            var tensors = shards[s].Select(t => PeftAdapter.EncodeTensor(t.Name, t.Shape, t.Values, t.DType)).ToList();
            SafetensorsWriter.Save(Path.Combine(dir, name), tensors, metadata);
            foreach (var t in tensors)
            {
                weightMap[t.Spec.Name] = name;
                total += t.Spec.ByteLength;
            }
        }
        if (shards.Count > 1)
        {
            var json = new System.Text.StringBuilder();
            json.Append("{\n  \"metadata\": {\"total_size\": ").Append(total).Append("},\n  \"weight_map\": {\n");
            json.Append(string.Join(",\n", weightMap.Select(kv => $"    \"{kv.Key}\": \"{kv.Value}\"")));
            json.Append("\n  }\n}\n");
            File.WriteAllText(Path.Combine(dir, SafetensorsCheckpoint.IndexFileName), json.ToString());
        }
        return dir;
    }

    /// <summary>Round-trips fp32 values through a dtype, as the checkpoint stores them.</summary>
    public static float[] Stored(float[] v, DType dtype)
    {
        var (spec, data) = PeftAdapter.EncodeTensor("x", [v.Length], v, dtype);
        string dir = NewDir();
        string path = Path.Combine(dir, "x.safetensors");
        SafetensorsWriter.Save(path, [(spec, data)]);
        using var f = SafetensorsFile.Open(path);
        return f.ReadSingles("x");
    }
}
