using System.Runtime.InteropServices;
using System.Text.Json;
using OnnxLora.Core;
using OnnxLora.Core.Safetensors;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace OnnxLora.Training.TrainerInternals;

/// <summary>
/// Writes and reads the trainer's adapter tensors as a PEFT adapter folder (adapter_config.json +
/// adapter_model.safetensors). The one place adapters are saved, so the file format has one owner.
/// </summary>
internal static class AdapterFiles
{
    public const string ConfigFileName = "adapter_config.json";
    public const string WeightsFileName = "adapter_model.safetensors";

    /// <summary>Writes both files into <paramref name="directory"/> (which must exist). Tensors go in key order, as float32.</summary>
    public static void Save(string directory, AdapterManifest manifest, IReadOnlyList<(string Key, Parameter Parameter)> tensors)
    {
        File.WriteAllBytes(Path.Combine(directory, ConfigFileName), ConfigJson(manifest));
        var ordered = tensors.OrderBy(t => t.Key, StringComparer.Ordinal).ToList();
        var items = new List<(TensorSpec, ReadOnlyMemory<byte>)>(ordered.Count);
        foreach (var (key, p) in ordered)
        {
            using var scope = NewDisposeScope();
            float[] values = p.detach().to(ScalarType.Float32).contiguous().data<float>().ToArray();
            items.Add((new TensorSpec(key, DType.F32, p.shape), MemoryMarshal.AsBytes(values.AsSpan()).ToArray()));
        }
        SafetensorsWriter.Save(Path.Combine(directory, WeightsFileName), items,
            new Dictionary<string, string> { ["format"] = "pt" }, overwrite: true);
    }

    /// <summary>Copies the tensors saved in <paramref name="directory"/> into <paramref name="tensors"/>, checking names and shapes.</summary>
    public static void LoadInto(string directory, IReadOnlyList<(string Key, Parameter Parameter)> tensors)
    {
        string path = Path.Combine(directory, WeightsFileName);
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"{path}: adapter weights not found.", path);
        }
        using var file = SafetensorsFile.Open(path);
        using var noGrad = no_grad();
        foreach (var (key, p) in tensors)
        {
            var info = file.Find(key) ?? throw new InvalidDataException($"{path}: tensor '{key}': found none, expected one (the run's adapter has it).");
            if (!info.Shape.SequenceEqual(p.shape))
            {
                throw new InvalidDataException($"{path}: tensor '{key}': found shape {info.Spec.ShapeText}, expected [{string.Join(", ", p.shape)}].");
            }
            using var scope = NewDisposeScope();
            float[] values = file.ReadSingles(info);
            p.copy_(tensor(values, p.shape));
        }
        if (file.Tensors.Count != tensors.Count)
        {
            var extra = file.Tensors.Select(t => t.Name).Except(tensors.Select(t => t.Key), StringComparer.Ordinal).First();
            throw new InvalidDataException($"{path}: tensor '{extra}': found it, expected only the run's {tensors.Count} adapter tensors.");
        }
    }

    /// <summary>adapter_config.json in PEFT's LoraConfig layout.</summary>
    public static byte[] ConfigJson(AdapterManifest m)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteStartObject("alpha_pattern");
            w.WriteEndObject();
            w.WriteNull("auto_mapping");
            w.WriteString("base_model_name_or_path", m.BaseModelPath);
            w.WriteString("bias", "none");
            w.WriteBoolean("fan_in_fan_out", false);
            w.WriteBoolean("inference_mode", true);
            w.WriteBoolean("init_lora_weights", true);
            w.WriteNull("layers_pattern");
            w.WriteNull("layers_to_transform");
            w.WriteNumber("lora_alpha", m.Alpha);
            w.WriteNumber("lora_dropout", m.Dropout);
            if (m.ModulesToSave is null)
            {
                w.WriteNull("modules_to_save");
            }
            else
            {
                w.WriteStartArray("modules_to_save");
                foreach (string s in m.ModulesToSave)
                {
                    w.WriteStringValue(s);
                }
                w.WriteEndArray();
            }
            w.WriteString("peft_type", "LORA");
            w.WriteNumber("r", m.Rank);
            w.WriteStartObject("rank_pattern");
            w.WriteEndObject();
            w.WriteNull("revision");
            w.WriteStartArray("target_modules");
            foreach (string t in m.TargetModules.Order(StringComparer.Ordinal))
            {
                w.WriteStringValue(t);
            }
            w.WriteEndArray();
            w.WriteString("task_type", m.PeftTaskType);
            w.WriteBoolean("use_dora", m.UseDora);
            w.WriteBoolean("use_rslora", m.UseRsLora);
            w.WriteEndObject();
        }
        buffer.WriteByte((byte)'\n');
        return buffer.ToArray();
    }
}
