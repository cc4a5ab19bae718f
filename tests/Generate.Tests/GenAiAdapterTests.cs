using OnnxLora.Core.Peft;
using OnnxLora.Export;
using OnnxLora.Models.Llama;
using OnnxLora.Models.Onnx;
using OnnxLora.Models.Peft;

namespace OnnxLora.Generate.Tests;

/// <summary>
/// One adapter-ready GenAI folder (<see cref="OnnxExportMode.Adapters"/>, with past) and two <c>.onnx_adapter</c> files of
/// different ranks loaded through GenAI's <c>Adapters</c> API: with each adapter active, GenAI generates exactly the greedy
/// tokens of that adapter's merged GenAI folder (the merged weights come from an independent path: W + s·B·A folded into
/// the weights); with none active, the base folder's tokens.
/// </summary>
[TestClass]
public sealed class GenAiAdapterTests
{
    private const string Prompt = "Anna sees the red cat. =>";

    [TestMethod]
    public void GenAiAdapters_TwoRanksInOneModel_GenerateTheirMergedFoldersTokens_AndNoneActiveTheBaseTokens()
    {
        using var temp = new TempDir();
        // The sample's trained adapter (r = 8 on q_proj/v_proj) and a random rsLoRA adapter of rank 16 on the same modules.
        string r16 = RandomLoraAdapter.Write(temp.Sub("r16"), Sample.TinyLlamaLora, rank: 16, alpha: 16, seed: 5, rsLora: true, scale: 0.1);
        string[] adapters = [Sample.TinyLlamaLora, r16];
        for (int k = 0; k < adapters.Length; k++)
        {
            using var model = LlamaForCausalLM.FromPretrained(Sample.TinyLlama);
            model.eval();
            PeftModelAdapter.Attach(model, adapters[k]);
            GenAiExporter.Export(model, Sample.TinyLlama, temp.Sub($"merged{k}"), new ExportOptions { Mode = OnnxExportMode.Merged });
            if (k == 0)
            {
                GenAiExporter.Export(model, Sample.TinyLlama, temp.Sub("base"), new ExportOptions { Mode = OnnxExportMode.Base });
                var loaded = adapters.Select(a => PeftAdapter.Load(a)).ToList();
                try
                {
                    var written = GenAiExporter.Export(model, Sample.TinyLlama, temp.Sub("adapters"), new ExportOptions { Mode = OnnxExportMode.Adapters }, loaded);
                    CollectionAssert.AreEquivalent(new[] { "tiny-llama-lora.onnx_adapter", "r16.onnx_adapter" }, written.Model.AdapterFiles.Select(Path.GetFileName).ToArray());
                    CollectionAssert.IsSubsetOf(new[] { "tiny-llama-lora.onnx_adapter", "r16.onnx_adapter" }, written.Files.ToArray());
                }
                finally
                {
                    loaded.ForEach(a => a.Dispose());
                }
            }
        }
        var options = new GenerationOptions { MaxNewTokens = 32 };

        using var genAi = GenAiGenerator.Open(temp.Sub("adapters"));
        var prompt = genAi.Encode(Prompt);
        genAi.LoadAdapter(temp.Sub("adapters/tiny-llama-lora.onnx_adapter"), "sample");
        genAi.LoadAdapter(temp.Sub("adapters/r16.onnx_adapter"), "r16");
        var expected = new List<GenerationResult>();
        for (int k = 0; k < adapters.Length; k++)
        {
            using var merged = GenAiGenerator.Open(temp.Sub($"merged{k}"));
            expected.Add(merged.Generate(prompt, options));
        }
        GenerationResult fromBase;
        using (var baseModel = GenAiGenerator.Open(temp.Sub("base")))
        {
            fromBase = baseModel.Generate(prompt, options);
        }

        // Switch between generators without reloading: sample, r16, none, sample again.
        var actual = new Dictionary<string, List<GenerationResult>>();
        foreach (string? name in new[] { "sample", "r16", null, "sample" })
        {
            genAi.ActiveAdapter = name;
            var result = genAi.Generate(prompt, options);
            (actual.TryGetValue(name ?? "", out var list) ? list : actual[name ?? ""] = []).Add(result);
        }

        Assert.AreEqual(32, expected[0].Tokens.Count, "32 tokens without an early end of sequence: " + expected[0].Text);
        Assert.AreEqual(32, expected[1].Tokens.Count, "32 tokens without an early end of sequence: " + expected[1].Text);
        foreach (var r in actual["sample"])
        {
            CollectionAssert.AreEqual(expected[0].Tokens.ToArray(), r.Tokens.ToArray(), $"merged: {expected[0].Text} | adapter active: {r.Text}");
        }
        CollectionAssert.AreEqual(expected[1].Tokens.ToArray(), actual["r16"][0].Tokens.ToArray(), $"merged r16: {expected[1].Text} | adapter active: {actual["r16"][0].Text}");
        CollectionAssert.AreEqual(fromBase.Tokens.ToArray(), actual[""][0].Tokens.ToArray(), $"base: {fromBase.Text} | none active: {actual[""][0].Text}");
        // Not vacuous: each adapter changes the continuation, and the two adapters differ.
        CollectionAssert.AreNotEqual(fromBase.Tokens.ToArray(), expected[0].Tokens.ToArray());
        CollectionAssert.AreNotEqual(fromBase.Tokens.ToArray(), expected[1].Tokens.ToArray());
        CollectionAssert.AreNotEqual(expected[0].Tokens.ToArray(), expected[1].Tokens.ToArray());
    }

    [TestMethod]
    public void GenAiAdapters_UnknownNameOrForeignFile_AreOneLineBadInput()
    {
        using var temp = new TempDir();
        using (var model = LlamaForCausalLM.FromPretrained(Sample.TinyLlama))
        {
            PeftModelAdapter.Attach(model, Sample.TinyLlamaLora);
            using var adapter = PeftAdapter.Load(Sample.TinyLlamaLora);
            GenAiExporter.Export(model, Sample.TinyLlama, temp.Sub("adapters"), new ExportOptions { Mode = OnnxExportMode.Adapters }, [adapter]);
        }
        using var genAi = GenAiGenerator.Open(temp.Sub("adapters"));
        var unknown = BadInput.Throws(() => genAi.ActiveAdapter = "nope");
        StringAssert.Contains(unknown.Message, "nope");

        string foreign = temp.Sub("foreign.onnx_adapter");
        Core.Onnx.OnnxAdapterFile.Write(foreign, [new Core.Onnx.OnnxAdapterParameter("base_model.model.model.layers.0.mlp.up_proj.lora_A.weight", Core.DType.F32, [128, 2], new byte[128 * 2 * 4])]);
        var e = BadInput.Throws(() => genAi.LoadAdapter(foreign, "foreign"));
        StringAssert.Contains(e.Message, "foreign.onnx_adapter");
        StringAssert.Contains(e.Message, "up_proj");
    }
}
