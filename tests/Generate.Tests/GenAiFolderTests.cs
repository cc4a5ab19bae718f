using System.Text.Json.Nodes;
using OnnxLora.Core.GenAi;
using OnnxLora.Export;
using OnnxLora.Models;
using OnnxLora.Models.Llama;

namespace OnnxLora.Generate.Tests;

/// <summary>The GenAI folder: what the exporter writes, and every bad folder refused with a one-line error naming the file and field.</summary>
[TestClass]
public sealed class GenAiFolderTests
{
    [TestMethod]
    public void Export_WritesModelConfigAndTokenizer_WithTheModelsHeadCounts()
    {
        using var temp = new TempDir();
        using var model = LlamaForCausalLM.CreateRandom(TinyConfigs.Llama(), seed: 3);
        var result = GenAiExporter.Export(model, Sample.TinyLlama, temp.Sub("out"));

        CollectionAssert.AreEquivalent(new[] { "genai_config.json", "model.onnx", "tokenizer.json", "tokenizer_config.json" }, result.Files.ToArray());
        var json = JsonNode.Parse(File.ReadAllText(Path.Combine(result.Directory, "genai_config.json")))!;
        Assert.AreEqual("llama", (string?)json["model"]!["type"]);
        Assert.AreEqual(128, (int)json["model"]!["context_length"]!);
        Assert.AreEqual(2, (int)json["model"]!["decoder"]!["num_key_value_heads"]!);
        Assert.AreEqual(4, (int)json["model"]!["decoder"]!["num_attention_heads"]!);
        Assert.AreEqual(8, (int)json["model"]!["decoder"]!["head_size"]!);
        Assert.AreEqual("past_key_values.%d.key", (string?)json["model"]!["decoder"]!["inputs"]!["past_key_names"]);
        Assert.AreEqual("present.%d.value", (string?)json["model"]!["decoder"]!["outputs"]!["present_value_names"]);
        Assert.AreEqual(2, (int)json["model"]!["eos_token_id"]!);
        Assert.IsFalse((bool)json["search"]!["do_sample"]!);
        Assert.AreEqual(File.ReadAllText(Path.Combine(Sample.TinyLlama, "tokenizer.json")), File.ReadAllText(Path.Combine(result.Directory, "tokenizer.json")));
        Assert.AreEqual(result.Directory, GenAiFolder.Open(result.Directory).Directory, "the exporter's own folder passes the check");
    }

    [TestMethod]
    public void Export_WithoutTokenizer_IsBadInputAndWritesNothing()
    {
        using var temp = new TempDir();
        using var model = LlamaForCausalLM.CreateRandom(TinyConfigs.Llama(), seed: 3);
        var e = BadInput.Throws(() => GenAiExporter.Export(model, temp.Path, temp.Sub("out")));
        StringAssert.Contains(e.Message, "tokenizer.json");
        Assert.IsFalse(Directory.Exists(temp.Sub("out")));
        Assert.AreEqual(0, Directory.GetFileSystemEntries(temp.Path).Length, "no partial folder left behind");
    }

    [TestMethod]
    public void Export_OverAnExistingFolder_IsBadInputUnlessOverwrite()
    {
        using var temp = new TempDir();
        using var model = LlamaForCausalLM.CreateRandom(TinyConfigs.Llama(), seed: 3);
        Directory.CreateDirectory(temp.Sub("out"));
        BadInput.Throws(() => GenAiExporter.Export(model, Sample.TinyLlama, temp.Sub("out")));
        GenAiExporter.Export(model, Sample.TinyLlama, temp.Sub("out"), new ExportOptions { Overwrite = true });
        Assert.IsTrue(File.Exists(Path.Combine(temp.Sub("out"), "genai_config.json")));
    }

    [TestMethod]
    [DataRow("tokenizer.json")]
    [DataRow("tokenizer_config.json")]
    [DataRow("genai_config.json")]
    [DataRow("model.onnx")]
    public void Open_WithAFileMissing_IsBadInputNamingIt(string missing)
    {
        using var temp = new TempDir();
        string folder = ExportTiny(temp);
        File.Delete(Path.Combine(folder, missing));
        var e = BadInput.Throws(() => GenAiFolder.Open(folder));
        StringAssert.Contains(e.Message, missing);
    }

    [TestMethod]
    [DataRow("num_key_value_heads", 4)]
    [DataRow("head_size", 16)]
    [DataRow("num_hidden_layers", 3)]
    public void Open_WithAConfigThatDisagreesWithTheGraph_IsBadInputNamingTheField(string field, int value)
    {
        using var temp = new TempDir();
        string folder = ExportTiny(temp);
        EditConfig(folder, json => json["model"]!["decoder"]![field] = value);
        var e = BadInput.Throws(() => GenAiFolder.Open(folder));
        StringAssert.Contains(e.Message, field);
        StringAssert.Contains(e.Message, "genai_config.json");
    }

    [TestMethod]
    public void Open_WithACacheNameNotInTheGraph_IsBadInputNamingTheField()
    {
        using var temp = new TempDir();
        string folder = ExportTiny(temp);
        EditConfig(folder, json => json["model"]!["decoder"]!["outputs"]!["present_key_names"] = "present_key_%d");
        var e = BadInput.Throws(() => GenAiFolder.Open(folder));
        StringAssert.Contains(e.Message, "present_key_names");
    }

    [TestMethod]
    public void Generate_WithAPromptThatFillsTheContext_IsBadInput()
    {
        using var temp = new TempDir();
        using var model = LlamaForCausalLM.CreateRandom(TinyConfigs.Llama(), seed: 3);
        GenAiExporter.Export(model, Sample.TinyLlama, temp.Sub("out"));
        int[] prompt = [.. Enumerable.Repeat(5, model.Config.MaxPositionEmbeddings)];
        using var genAi = GenAiGenerator.Open(temp.Sub("out"));
        using var eager = new EagerGenerator(model, tokenizer: null);

        StringAssert.Contains(BadInput.Throws(() => genAi.Generate(prompt, GenerationOptions.Default)).Message, "context length 128");
        StringAssert.Contains(BadInput.Throws(() => eager.Generate(prompt, GenerationOptions.Default)).Message, "context length 128");
        BadInput.Throws(() => genAi.Generate([1, 5], new GenerationOptions { TopP = 1.5 }));
    }

    private static string ExportTiny(TempDir temp)
    {
        using var model = LlamaForCausalLM.CreateRandom(TinyConfigs.Llama(), seed: 3);
        return GenAiExporter.Export(model, Sample.TinyLlama, temp.Sub("out")).Directory;
    }

    private static void EditConfig(string folder, Action<JsonNode> edit)
    {
        string path = Path.Combine(folder, GenAiConfig.FileName);
        var json = JsonNode.Parse(File.ReadAllText(path))!;
        edit(json);
        File.WriteAllText(path, json.ToJsonString());
    }
}
