using System.Text.Json;
using OnnxLora.Models;
using OnnxLora.Models.Bert;

namespace OnnxLora.MergeExport.Tests;

/// <summary><c>export --genai</c> then <c>generate</c>: the GenAI folder and the checkpoint continue a prompt alike; bad input exits 2 with one line.</summary>
[TestClass]
public sealed class GenerateCommandTests
{
    private const string Prompt = "Leo washes the big cat. =>";

    [TestMethod]
    public void ExportGenAi_ThenGenerate_GivesTheTokensOfTheCheckpointWithTheAdapter()
    {
        using var dir = new TempDir();
        string folder = dir.File("genai");
        var (code, json, err) = CliHarness.Run("export", "--model", SampleModels.Model, "--adapter", SampleModels.Adapter, "--genai", folder, "--json");
        Assert.AreEqual(0, code, err);
        Assert.AreEqual(folder, JsonDocument.Parse(json).RootElement.GetProperty("outputs").GetProperty("genai").GetString());

        var (genCode, genJson, genErr) = CliHarness.Run("generate", "--genai", folder, "--prompt", Prompt, "--max-new-tokens", "12", "--json");
        var (eagerCode, eagerJson, eagerErr) = CliHarness.Run("generate", "--model", SampleModels.Model, "--adapter", SampleModels.Adapter, "--prompt", Prompt, "--max-new-tokens", "12", "--json");

        Assert.AreEqual(0, genCode, genErr);
        Assert.AreEqual(0, eagerCode, eagerErr);
        var genAi = JsonDocument.Parse(genJson).RootElement.GetProperty("details");
        var eager = JsonDocument.Parse(eagerJson).RootElement.GetProperty("details");
        Assert.AreEqual("onnxruntime-genai", genAi.GetProperty("backend").GetString());
        Assert.AreEqual(12, genAi.GetProperty("tokens").GetArrayLength());
        Assert.AreEqual(eager.GetProperty("tokens").GetRawText(), genAi.GetProperty("tokens").GetRawText());
        Assert.AreEqual(eager.GetProperty("text").GetString(), genAi.GetProperty("text").GetString());
        Assert.AreEqual(11, genAi.GetProperty("tokenMs").GetArrayLength());
    }

    [TestMethod]
    public void Generate_Streams_TheTextThenOneSummaryLine()
    {
        using var dir = new TempDir();
        string folder = dir.File("genai");
        Assert.AreEqual(0, CliHarness.Run("export", "--model", SampleModels.Model, "--genai", folder, "--mode", "base").ExitCode);
        var (code, text, err) = CliHarness.Run("generate", "--genai", folder, "--prompt", Prompt, "--max-new-tokens", "4", "--temperature", "0.8", "--top-k", "5", "--seed", "3");
        Assert.AreEqual(0, code, err);
        StringAssert.Contains(text, "tokens; first after");
    }

    [TestMethod]
    public void Generate_WithAnEncoderCheckpoint_IsBadInput()
    {
        using var dir = new TempDir();
        using (var bert = BertModel.CreateRandom(TinyConfigs.Bert(), seed: 1))
        {
            bert.SaveCheckpoint(dir.File("bert"));
        }
        AssertBadInput(["generate", "--model", dir.File("bert"), "--prompt", "hi"], "--model", "decoder");
        AssertBadInput(["export", "--model", dir.File("bert"), "--mode", "base", "--genai", dir.File("g")], "--genai", "decoder");
        Assert.IsFalse(Directory.Exists(dir.File("g")));
    }

    [TestMethod]
    public void Generate_WithAMissingOrIncompleteFolder_IsBadInput()
    {
        using var dir = new TempDir();
        AssertBadInput(["generate", "--genai", dir.File("nothing"), "--prompt", "hi"], "nothing");
        string folder = dir.File("genai");
        Assert.AreEqual(0, CliHarness.Run("export", "--model", SampleModels.Model, "--genai", folder, "--mode", "base").ExitCode);
        File.Delete(Path.Combine(folder, "tokenizer.json"));
        AssertBadInput(["generate", "--genai", folder, "--prompt", "hi"], "tokenizer.json");
    }

    [TestMethod]
    public void Generate_WithAPromptLongerThanTheContext_IsBadInput()
    {
        string prompt = string.Join(' ', Enumerable.Repeat("Anna", 80));
        AssertBadInput(["generate", "--model", SampleModels.Model, "--prompt", prompt], "--prompt", "context length 64");
    }

    [TestMethod]
    public void Generate_OptionMistakes_AreParseErrors()
    {
        Assert.AreEqual(2, CliHarness.Run("generate", "--prompt", "hi").ExitCode);
        Assert.AreEqual(2, CliHarness.Run("generate", "--genai", "a", "--model", "b", "--prompt", "hi").ExitCode);
        Assert.AreEqual(2, CliHarness.Run("export", "--model", SampleModels.Model, "--mode", "base").ExitCode);
        AssertBadInput(["generate", "--model", SampleModels.Model, "--prompt", "hi", "--top-p", "2"], "--top-p");
    }

    private static void AssertBadInput(string[] args, params string[] messageParts)
    {
        var (code, _, err) = CliHarness.Run(args);
        Assert.AreEqual(2, code, err);
        Assert.AreEqual(1, err.Trim().Split('\n').Length, $"one line expected: {err}");
        foreach (string part in messageParts)
        {
            StringAssert.Contains(err, part, err);
        }
    }
}
