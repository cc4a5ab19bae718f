using Microsoft.ML.OnnxRuntime;
using Onnx;
using OnnxLora.Core.Onnx;
using OnnxLora.Core.Peft;
using OnnxLora.Export;
using OnnxLora.Merge.Onnx;
using OnnxLora.Models;
using OnnxLora.Models.Llama;
using OnnxLora.Models.Onnx;

namespace OnnxLora.Merge.Tests.Onnx;

/// <summary>
/// A tiny random LLaMA checkpoint and a PEFT adapter, merged two ways: (1) into the checkpoint, then
/// exported with this project; (2) the base exported, rewritten into torch.onnx's layout (anonymous
/// "onnx::MatMul_N" weights holding Wᵀ, path-style node names — or no names at all), then merged into
/// the ONNX model. Both run in ONNX Runtime and must agree.
/// </summary>
[TestClass]
public sealed class LlamaRoundTripTests
{
    private const int Batch = 2;
    private const int Sequence = 5;

    private static readonly string[] Linears = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

    [TestMethod]
    public void Merge_TorchOnnxLayoutLlama_MatchesCheckpointMergeThenExport()
    {
        var config = TinyConfigs.Llama();
        string root = TestData.NewDir();
        string checkpoint = Path.Combine(root, "base");
        using (var model = LlamaForCausalLM.CreateRandom(config, seed: 77, std: 0.2))
        {
            model.SaveCheckpoint(checkpoint);
        }
        using var adapter = Adapter(config, Path.Combine(root, "adapter"));
        var adapters = OnnxTestKit.One(adapter);

        // (1) merge into the checkpoint, export.
        string mergedCheckpoint = Path.Combine(root, "merged-ckpt");
        CheckpointMerger.Merge(checkpoint, adapters, mergedCheckpoint);
        string viaCheckpoint = Path.Combine(root, "via-checkpoint.onnx");
        using (var merged = LlamaForCausalLM.FromPretrained(mergedCheckpoint))
        {
            merged.eval();
            OnnxExporter.Export(merged, viaCheckpoint, new ExportOptions { Mode = OnnxExportMode.Base });
        }

        // (2) export the base, lay it out as torch.onnx does, merge into the ONNX model.
        ModelProto exported;
        using (var baseModel = LlamaForCausalLM.FromPretrained(checkpoint))
        {
            baseModel.eval();
            exported = OnnxExporter.BuildModel(baseModel, new ExportOptions { Mode = OnnxExportMode.Base });
        }
        string torchLayout = Path.Combine(root, "torch-layout.onnx");
        OnnxFile.Save(ToTorchLayout(exported.Clone(), nodeNames: true), torchLayout);
        string direct = Path.Combine(root, "direct.onnx");
        var result = OnnxModelMerger.Merge(torchLayout, adapters, direct);
        var matched = result.Plan.Entries.Where(e => e.ModulePath.StartsWith("model.layers.", StringComparison.Ordinal) || e.ModulePath == "lm_head").ToList();
        Assert.HasCount((Linears.Length * config.NumHiddenLayers) + 1, matched);
        Assert.IsTrue(matched.All(e => e.Match == OnnxMatchKind.NodePath && e.Layout == OnnxWeightLayout.Transposed && e.Initializer.StartsWith("onnx::MatMul_", StringComparison.Ordinal)),
            result.Plan.Describe());

        // (2') no names at all: matched by contents against the base checkpoint.
        string anonymous = Path.Combine(root, "anonymous.onnx");
        OnnxFile.Save(ToTorchLayout(exported.Clone(), nodeNames: false), anonymous);
        string byContents = Path.Combine(root, "by-contents.onnx");
        var contentResult = OnnxModelMerger.Merge(anonymous, adapters, byContents, new OnnxMergeOptions { BaseCheckpoint = checkpoint });
        Assert.IsTrue(contentResult.Plan.Entries.All(e => e.Match == OnnxMatchKind.Content), contentResult.Plan.Describe());

        long[] ids = [5, 17, 2, 63, 9, 1, 0, 44, 31, 8];
        float[] expected = Run(viaCheckpoint, ids);
        float[] unmerged = Run(torchLayout, ids);
        Assert.IsGreaterThan(1e-2, MaxAbsDiff(expected, unmerged), "the adapter must change the logits, or this test proves nothing");
        OnnxTestKit.AssertOutputsClose(expected.Select(v => (double)v).ToArray(), Run(direct, ids), 1e-4, "ONNX merge (node paths) vs checkpoint merge + export");
        OnnxTestKit.AssertOutputsClose(expected.Select(v => (double)v).ToArray(), Run(byContents, ids), 1e-4, "ONNX merge (contents) vs checkpoint merge + export");
    }

    /// <summary>LoRA on every linear of every layer, the LM head and the embedding, with random A and B.</summary>
    private static PeftAdapter Adapter(Core.HuggingFace.LlamaConfig config, string directory)
    {
        int r = 4;
        int hidden = config.HiddenSize, inter = config.IntermediateSize, kv = config.NumKeyValueHeads * (hidden / config.NumAttentionHeads);
        var modules = new List<(string Path, int Out, int In, AdapterModuleKind Kind)>();
        for (int layer = 0; layer < config.NumHiddenLayers; layer++)
        {
            string attn = $"model.layers.{layer}.self_attn.", mlp = $"model.layers.{layer}.mlp.";
            modules.Add((attn + "q_proj", hidden, hidden, AdapterModuleKind.Lora));
            modules.Add((attn + "k_proj", kv, hidden, AdapterModuleKind.Lora));
            modules.Add((attn + "v_proj", kv, hidden, AdapterModuleKind.Lora));
            modules.Add((attn + "o_proj", hidden, hidden, AdapterModuleKind.Lora));
            modules.Add((mlp + "gate_proj", inter, hidden, AdapterModuleKind.Lora));
            modules.Add((mlp + "up_proj", inter, hidden, AdapterModuleKind.Lora));
            modules.Add((mlp + "down_proj", hidden, inter, AdapterModuleKind.Lora));
        }
        modules.Add(("lm_head", config.VocabSize, hidden, AdapterModuleKind.Lora));
        modules.Add(("model.embed_tokens", hidden, config.VocabSize, AdapterModuleKind.LoraEmbedding));
        var tensors = new List<(Core.Safetensors.TensorSpec, ReadOnlyMemory<byte>)>();
        int seed = 900;
        foreach (var (path, o, i, kind) in modules)
        {
            tensors.Add(PeftAdapter.EncodeTensor(PeftAdapter.KeyFor(path, kind, AdapterTensorRole.LoraA), [r, i], TestData.Random(r * i, seed++, 0.3)));
            tensors.Add(PeftAdapter.EncodeTensor(PeftAdapter.KeyFor(path, kind, AdapterTensorRole.LoraB), [o, r], TestData.Random(o * r, seed++, 0.3)));
        }
        var peftConfig = new PeftAdapterConfig
        {
            R = r,
            Alpha = 8,
            TargetModules = TargetModules.FromList([.. Linears, "lm_head", "embed_tokens"]),
        };
        PeftAdapter.Save(directory, peftConfig, tensors);
        return PeftAdapter.Load(directory);
    }

    /// <summary>
    /// Rewrites an export into torch.onnx's layout: every MatMul weight becomes an anonymous
    /// "onnx::MatMul_N" (it already holds Wᵀ [in, out]) read by a node named "/model/layers.0/self_attn/q_proj/MatMul";
    /// without <paramref name="nodeNames"/> every initializer is anonymous and every node unnamed.
    /// </summary>
    private static ModelProto ToTorchLayout(ModelProto model, bool nodeNames)
    {
        var graph = model.Graph;
        var initializers = graph.Initializer.ToDictionary(t => t.Name, StringComparer.Ordinal);
        var rename = new Dictionary<string, string>(StringComparer.Ordinal);
        int n = 0;
        foreach (var node in graph.Node)
        {
            node.Name = nodeNames ? $"node_{n}" : "";
            n++;
            if (node.OpType != "MatMul" || !initializers.ContainsKey(node.Input[1]) || !node.Input[1].EndsWith(".weight", StringComparison.Ordinal))
            {
                continue;
            }
            string weight = node.Input[1];
            if (!rename.ContainsKey(weight))
            {
                rename[weight] = $"onnx::MatMul_{1000 + rename.Count}";
            }
            if (nodeNames)
            {
                node.Name = "/" + TorchLikeModel.Scope(weight[..^".weight".Length]) + "/MatMul";
            }
        }
        if (!nodeNames)
        {
            foreach (var t in graph.Initializer.Where(t => !rename.ContainsKey(t.Name) && t.Name.EndsWith(".weight", StringComparison.Ordinal)))
            {
                rename[t.Name] = $"onnx::Mul_{2000 + rename.Count}";
            }
        }
        foreach (var t in graph.Initializer)
        {
            t.Name = rename.GetValueOrDefault(t.Name, t.Name);
        }
        foreach (var node in graph.Node)
        {
            for (int i = 0; i < node.Input.Count; i++)
            {
                node.Input[i] = rename.GetValueOrDefault(node.Input[i], node.Input[i]);
            }
        }
        model.ProducerName = "pytorch";
        return model;
    }

    private static float[] Run(string modelPath, long[] ids)
    {
        using var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_DISABLE_ALL };
        using var session = new InferenceSession(modelPath, options);
        using var inputIds = OrtValue.CreateTensorValueFromMemory(ids, [Batch, Sequence]);
        using var mask = OrtValue.CreateTensorValueFromMemory(Enumerable.Repeat(1L, Batch * Sequence).ToArray(), [Batch, Sequence]);
        using var runOptions = new RunOptions();
        using var outputs = session.Run(runOptions, ["input_ids", "attention_mask"], [inputIds, mask], ["logits"]);
        return outputs[0].GetTensorDataAsSpan<float>().ToArray();
    }

    private static double MaxAbsDiff(float[] a, float[] b) => a.Zip(b, (x, y) => Math.Abs((double)x - y)).Max();
}
