using OnnxLora.Core.Peft;
using OnnxLora.Export;
using OnnxLora.Merge;
using OnnxLora.Models.Llama;
using OnnxLora.Models.Onnx;
using OnnxLora.Models.Peft;

namespace OnnxLora.Generate.Tests;

/// <summary>
/// The sample's GenAI folders run in ONNX Runtime GenAI (CPU) and generate exactly the tokens the TorchSharp model
/// generates greedily from the merged checkpoint (an independent path: checkpoint merge, eager fp32 with its own
/// key/value cache, which <see cref="EagerGeneratorTests"/> checks against recomputing the whole sequence).
/// </summary>
[TestClass]
public sealed class GenAiGenerationTests
{
    private const string Prompt = "Anna sees the red cat. =>";

    [TestMethod]
    public void GenAiGreedy_MergedAndUnmerged_MatchEagerGreedyFromMergedCheckpoint()
    {
        using var temp = new TempDir();
        string merged = temp.Sub("merged");
        CheckpointMerger.Merge(Sample.TinyLlama, [new WeightedAdapter(PeftAdapter.Load(Sample.TinyLlamaLora))], merged);
        using var model = LlamaForCausalLM.FromPretrained(Sample.TinyLlama);
        model.eval();
        PeftModelAdapter.Attach(model, Sample.TinyLlamaLora);
        GenAiExporter.Export(model, Sample.TinyLlama, temp.Sub("genai-merged"), new ExportOptions { Mode = OnnxExportMode.Merged });
        GenAiExporter.Export(model, Sample.TinyLlama, temp.Sub("genai-unmerged"), new ExportOptions { Mode = OnnxExportMode.Unmerged });
        GenAiExporter.Export(model, Sample.TinyLlama, temp.Sub("genai-base"), new ExportOptions { Mode = OnnxExportMode.Base });
        var options = new GenerationOptions { MaxNewTokens = 32 };

        GenerationResult eager;
        using (var reference = EagerGenerator.Load(merged))
        {
            eager = reference.Generate(reference.Encode(Prompt), options);
        }
        using var genAiMerged = GenAiGenerator.Open(temp.Sub("genai-merged"));
        using var genAiUnmerged = GenAiGenerator.Open(temp.Sub("genai-unmerged"));
        var prompt = genAiMerged.Encode(Prompt);
        var fromMerged = genAiMerged.Generate(prompt, options);
        var fromUnmerged = genAiUnmerged.Generate(prompt, options);
        GenerationResult fromBase;
        using (var genAiBase = GenAiGenerator.Open(temp.Sub("genai-base")))
        {
            fromBase = genAiBase.Generate(prompt, options);
        }

        CollectionAssert.AreEqual(eager.PromptTokens.ToArray(), prompt.ToArray(), "GenAI's tokenizer and the checkpoint's encode the prompt alike");
        Assert.AreEqual(32, eager.Tokens.Count, "32 tokens without an early end of sequence, or the comparison is short: " + eager.Text);
        CollectionAssert.AreEqual(eager.Tokens.ToArray(), fromMerged.Tokens.ToArray(), $"eager: {eager.Text} | GenAI merged: {fromMerged.Text}");
        CollectionAssert.AreEqual(fromMerged.Tokens.ToArray(), fromUnmerged.Tokens.ToArray(), $"GenAI unmerged: {fromUnmerged.Text}");
        Assert.AreEqual(eager.Text, fromMerged.Text);
        CollectionAssert.AreNotEqual(fromMerged.Tokens.ToArray(), fromBase.Tokens.ToArray(), "the adapter must change the continuation, or the comparison proves little");
    }

    [TestMethod]
    public void GenAi_Fp16Folder_RunsAndStartsLikeFp32()
    {
        using var temp = new TempDir();
        using var model = LlamaForCausalLM.FromPretrained(Sample.TinyLlama);
        model.eval();
        PeftModelAdapter.Attach(model, Sample.TinyLlamaLora);
        GenAiExporter.Export(model, Sample.TinyLlama, temp.Sub("fp32"), new ExportOptions { Mode = OnnxExportMode.Merged });
        GenAiExporter.Export(model, Sample.TinyLlama, temp.Sub("fp16"), new ExportOptions { Mode = OnnxExportMode.Merged, WeightType = Core.DType.F16 });
        using var fp32 = GenAiGenerator.Open(temp.Sub("fp32"));
        using var fp16 = GenAiGenerator.Open(temp.Sub("fp16"));
        var prompt = fp32.Encode(Prompt);

        var a = fp32.Generate(prompt, new GenerationOptions { MaxNewTokens = 8 });
        var b = fp16.Generate(prompt, new GenerationOptions { MaxNewTokens = 8 });

        // fp16 KV cache and weights in GenAI: the first greedy tokens (large logit margins on the sample) agree with fp32.
        CollectionAssert.AreEqual(a.Tokens.ToArray(), b.Tokens.ToArray(), $"fp32: {a.Text} | fp16: {b.Text}");
    }
}
