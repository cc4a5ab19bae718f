using OnnxLora.Core;
using OnnxLora.Core.Onnx;
using OnnxLora.Core.Peft;
using OnnxLora.Merge;
using OnnxLora.Models;
using OnnxLora.Models.Llama;
using OnnxLora.Models.Onnx;
using OnnxLora.Models.Peft;
using static OnnxLora.Merge.Tests.TestData;

namespace OnnxLora.Export.Tests;

/// <summary>
/// Unmerged and adapters modes stream from the checkpoint and the adapter file (<see cref="OnnxExporter.ExportPretrained"/>): they
/// write the bytes the in-memory exporter writes for the same model loaded with its weights and the adapter attached — here for
/// what the pinned CLI cases (MergeExport.Tests' ExportBytesTests) do not hold: a LoRA embedding (its factors are CPU tensors on a
/// meta-device model), a modules_to_save head replacing the checkpoint's, and a bf16 checkpoint with a bf16 adapter.
/// </summary>
[TestClass]
public sealed class StreamedExportTests
{
    [TestMethod]
    [DataRow(OnnxExportMode.Unmerged, DType.F32, true)]
    [DataRow(OnnxExportMode.Unmerged, DType.F16, true)]
    [DataRow(OnnxExportMode.Adapters, DType.F16, false)]
    public void ExportPretrained_EmbeddingLoraAndSavedHead_WritesTheInMemoryExportersBytes(OnnxExportMode mode, DType weightType, bool savedHead)
    {
        string dir = NewDir();
        string model = Path.Combine(dir, "model");
        using (var random = LlamaForCausalLM.CreateRandom(TinyConfigs.Llama(), seed: 3))
        {
            random.SaveCheckpoint(model, DType.BF16);
        }
        var config = TinyConfigs.Llama();
        const int r = 4;
        var tensors = new List<(string, long[], float[])>
        {
            (Key("model.embed_tokens", ".lora_embedding_A"), [r, config.VocabSize], Random(r * config.VocabSize, 1)),
            (Key("model.embed_tokens", ".lora_embedding_B"), [config.HiddenSize, r], Random(config.HiddenSize * r, 2)),
        };
        for (int layer = 0; layer < config.NumHiddenLayers; layer++)
        {
            string q = $"model.layers.{layer}.self_attn.q_proj";
            tensors.Add((Key(q, ".lora_A.weight"), [r, config.HiddenSize], Random(r * config.HiddenSize, 10 + layer)));
            tensors.Add((Key(q, ".lora_B.weight"), [config.HiddenSize, r], Random(config.HiddenSize * r, 20 + layer)));
        }
        if (savedHead)
        {
            tensors.Add((PeftAdapter.KeyPrefix + "lm_head.weight", [config.VocabSize, config.HiddenSize], Random(config.VocabSize * config.HiddenSize, 30)));
        }
        using var adapter = Adapter(new PeftAdapterConfig
        {
            R = r,
            Alpha = 8,
            TargetModules = TargetModules.FromList(["embed_tokens", "q_proj"]),
            ModulesToSave = savedHead ? ["lm_head"] : null,
        }, DType.BF16, [.. tensors]);
        var options = new ExportOptions { Mode = mode, WeightType = weightType, ExternalData = OnnxExternalData.Always };

        Directory.CreateDirectory(Path.Combine(dir, "streamed"));
        Directory.CreateDirectory(Path.Combine(dir, "in-memory"));
        var streamed = OnnxExporter.ExportPretrained(model, [new WeightedAdapter(adapter)], Path.Combine(dir, "streamed", "model.onnx"), options);
        string inMemoryPath = Path.Combine(dir, "in-memory", "model.onnx");
        using (var loaded = PretrainedModel.Load(model))
        {
            PeftModelAdapter.Attach(loaded, adapter.Directory);
            OnnxExporter.Export(loaded, inMemoryPath, options);
        }

        Assert.AreEqual(config.NumHiddenLayers + 1, streamed.LoraLayerCount, "q_proj per layer and embed_tokens");
        CollectionAssert.AreEqual(File.ReadAllBytes(inMemoryPath), File.ReadAllBytes(streamed.ModelPath), "model.onnx");
        CollectionAssert.AreEqual(File.ReadAllBytes(inMemoryPath + ".data"), File.ReadAllBytes(streamed.ExternalDataPath!), "model.onnx.data");
        var inputs = OnnxFile.Load(streamed.ModelPath, new OnnxLoadOptions { LoadExternalData = false }).Graph.Input.Select(i => i.Name).ToHashSet();
        Assert.AreEqual(mode == OnnxExportMode.Adapters, inputs.Contains(Key("model.embed_tokens", ".lora_embedding_A")), "embedding factor as graph input (adapters) or initializer (unmerged)");
    }
}
