using OnnxLora.Core.Peft;
using OnnxLora.Core.Safetensors;

namespace OnnxLora.Core.Tests.Peft;

/// <summary>Tiny adapter folders written directly (bypassing PeftAdapter.Save's validation) for the tests.</summary>
internal static class PeftTestFiles
{
    /// <summary>This test run's scratch root, deleted by <see cref="DeleteAll"/>.</summary>
    public static string Root { get; } = Path.Combine(Path.GetTempPath(), "onnxlora-peft-tests", Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture));

    public static void DeleteAll()
    {
        if (Directory.Exists(Root))
        {
            Directory.Delete(Root, recursive: true);
        }
    }

    public static string NewDir()
    {
        string dir = Path.Combine(Root, Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        return dir;
    }

    public static float[] Values(int count, int seed)
    {
        var rng = new Random(seed);
        var v = new float[count];
        for (int i = 0; i < count; i++)
        {
            v[i] = (float)(rng.NextDouble() * 2 - 1);
        }
        return v;
    }

    public static (TensorSpec Spec, ReadOnlyMemory<byte> Data) F32(string key, long[] shape, int seed)
    {
        long n = shape.Aggregate(1L, (a, b) => a * b);
        return PeftAdapter.EncodeTensor(key, shape, Values((int)n, seed), DType.F32);
    }

    /// <summary>Writes config JSON and tensors as given, with no validation, in a new folder under <paramref name="root"/> (default: <see cref="Root"/>).</summary>
    public static string WriteRaw(string json, IEnumerable<(TensorSpec Spec, ReadOnlyMemory<byte> Data)> tensors, string? root = null)
    {
        string dir = root is null ? NewDir() : Path.Combine(root, Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, PeftAdapterConfig.FileName), json);
        SafetensorsWriter.Save(Path.Combine(dir, PeftAdapter.WeightsFileName), tensors, PeftAdapter.WeightsMetadata);
        return dir;
    }

    public const string LoraJson = """
        {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 2, "lora_alpha": 4, "target_modules": ["q_proj"], "bias": "none"}
        """;

    public static (TensorSpec, ReadOnlyMemory<byte>)[] LoraTensors(string path = "model.layers.0.self_attn.q_proj", int r = 2, int inF = 6, int outF = 5) =>
    [
        F32($"base_model.model.{path}.lora_A.weight", [r, inF], 1),
        F32($"base_model.model.{path}.lora_B.weight", [outF, r], 2),
    ];
}
