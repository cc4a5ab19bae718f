using System.Runtime.InteropServices;
using OnnxLora.Core;
using OnnxLora.Core.Peft;
using OnnxLora.Core.Safetensors;
using OnnxLora.Models.Lora;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace OnnxLora.Training.TrainerInternals;

/// <summary>
/// Writes and reads the trainer's adapter as a PEFT adapter folder (adapter_config.json +
/// adapter_model.safetensors) through Core's <see cref="PeftAdapter"/>: the one place the trainer
/// saves adapters.
/// </summary>
internal static class AdapterFiles
{
    /// <summary>Writes the adapter folder <paramref name="directory"/> atomically (float32 tensors, keys sorted).</summary>
    public static void Save(string directory, PeftAdapterConfig config, IReadOnlyList<(string Key, Parameter Parameter)> tensors, bool overwrite)
    {
        var items = new List<(TensorSpec, ReadOnlyMemory<byte>)>(tensors.Count);
        foreach (var (key, p) in tensors)
        {
            using var scope = NewDisposeScope();
            float[] values = p.detach().to(ScalarType.Float32).contiguous().data<float>().ToArray();
            items.Add(PeftAdapter.EncodeTensor(key, p.shape, values, DType.F32));
        }
        PeftAdapter.Save(directory, config, items, overwrite);
    }

    /// <summary>Copies the tensors of the adapter folder <paramref name="directory"/> into <paramref name="model"/>'s adapter (all must match).</summary>
    public static void LoadInto(string directory, TaskModel model)
    {
        using var adapter = PeftAdapter.Load(directory);
        using var scope = NewDisposeScope();
        var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var info in adapter.Weights.Tensors)
        {
            tensors[info.Name] = tensor(adapter.Weights.ReadSingles(info), info.Shape.ToArray());
        }
        LoraAdapterState.Load(model.Root, tensors, adapter.Weights.Path);
    }

    /// <summary>Raw float32 bytes of a parameter (for comparisons and tests).</summary>
    public static byte[] Bytes(Parameter p)
    {
        using var scope = NewDisposeScope();
        float[] values = p.detach().to(ScalarType.Float32).contiguous().data<float>().ToArray();
        return MemoryMarshal.AsBytes(values.AsSpan()).ToArray();
    }
}
