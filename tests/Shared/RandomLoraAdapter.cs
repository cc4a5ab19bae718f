using OnnxLora.Core;
using OnnxLora.Core.Peft;
using OnnxLora.Core.Safetensors;

namespace OnnxLora.Testing;

/// <summary>
/// A PEFT LoRA adapter with random factors on the modules a template adapter targets (shapes and target modules taken
/// from it), at any rank and alpha. Shared by the test projects (linked into each).
/// </summary>
internal static class RandomLoraAdapter
{
    /// <summary>Writes the adapter folder <paramref name="path"/> and returns it.</summary>
    public static string Write(string path, string templateAdapter, int rank, double alpha, int seed, bool rsLora = false, bool dora = false, double scale = 0.2)
    {
        using var template = PeftAdapter.Load(templateAdapter);
        var rng = new Random(seed);
        float[] Values(long n, double s) => [.. Enumerable.Range(0, (int)n).Select(_ => (float)((rng.NextDouble() * 2 - 1) * s))];
        var tensors = new List<(TensorSpec, ReadOnlyMemory<byte>)>();
        foreach (var m in template.Modules)
        {
            tensors.Add(PeftAdapter.EncodeTensor(PeftAdapter.KeyFor(m.ModulePath, m.Kind, AdapterTensorRole.LoraA), [rank, m.InFeatures], Values((long)rank * m.InFeatures, scale), DType.F32));
            tensors.Add(PeftAdapter.EncodeTensor(PeftAdapter.KeyFor(m.ModulePath, m.Kind, AdapterTensorRole.LoraB), [m.OutFeatures, rank], Values((long)m.OutFeatures * rank, scale), DType.F32));
            if (dora)
            {
                tensors.Add(PeftAdapter.EncodeTensor(PeftAdapter.KeyFor(m.ModulePath, m.Kind, AdapterTensorRole.Magnitude), [m.OutFeatures], Values(m.OutFeatures, 1.0), DType.F32));
            }
        }
        var config = new PeftAdapterConfig
        {
            R = rank,
            Alpha = alpha,
            UseRsLora = rsLora,
            UseDora = dora,
            TargetModules = TargetModules.FromList([.. template.Modules.Select(m => m.ModulePath.Split('.')[^1]).Distinct(StringComparer.Ordinal)]),
        };
        PeftAdapter.Save(path, config, tensors);
        return path;
    }
}
