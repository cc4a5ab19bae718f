using OnnxLora.Core.HuggingFace;
using OnnxLora.Models.Llama;
using OnnxLora.Training.Data;
using OnnxLora.Training.Sample;
using static TorchSharp.torch;

namespace OnnxLora.Training.Tests;

[TestClass]
public sealed class SampleGeneratorTests
{
    /// <summary>Small enough to generate in a second or two; the same code path as the committed sample.</summary>
    private static readonly SampleOptions Small = new()
    {
        HiddenSize = 32,
        IntermediateSize = 48,
        Layers = 1,
        Heads = 4,
        KeyValueHeads = 2,
        MaxVocabSize = 300,
        CorpusSentences = 60,
        TaskLines = 20,
        PretrainSteps = 4,
        PretrainBatchSize = 8,
    };

    [TestMethod]
    public void Generate_TwiceWithTheSameOptions_GivesIdenticalBytes_AndAnotherSeedDiffers()
    {
        using var dir = new TrainerTempDir();
        SampleGenerator.Generate(dir.File("a"), Small);
        SampleGenerator.Generate(dir.File("b"), Small);
        SampleGenerator.Generate(dir.File("c"), Small with { Seed = 7 });

        foreach (string name in SampleGenerator.FileNames)
        {
            CollectionAssert.AreEqual(File.ReadAllBytes(Path.Combine(dir.File("a"), name)), File.ReadAllBytes(Path.Combine(dir.File("b"), name)), name);
        }
        CollectionAssert.AreNotEqual(File.ReadAllBytes(Path.Combine(dir.File("a"), "model.safetensors")), File.ReadAllBytes(Path.Combine(dir.File("c"), "model.safetensors")));
        CollectionAssert.AreNotEqual(File.ReadAllBytes(Path.Combine(dir.File("a"), "task.jsonl")), File.ReadAllBytes(Path.Combine(dir.File("c"), "task.jsonl")));
    }

    [TestMethod]
    public void Generate_DefaultOptions_WritesTheCommittedTextFilesByteForByte()
    {
        // Pretraining steps do not touch these four files; model.safetensors is floating-point work and
        // is compared only on the machine that made it (see models/README.md), not here.
        using var dir = new TrainerTempDir();
        SampleGenerator.Generate(dir.File("s"), new SampleOptions { PretrainSteps = 0 });
        foreach (string name in new[] { "config.json", "tokenizer.json", "tokenizer_config.json", SampleGenerator.TaskFileName })
        {
            CollectionAssert.AreEqual(SampleGenerator.ReadEmbedded(name), File.ReadAllBytes(Path.Combine(dir.File("s"), name)), name);
        }
    }

    [TestMethod]
    public void WriteEmbedded_WritesALoadableLlamaCheckpointWithTokenizerAndTask()
    {
        using var dir = new TrainerTempDir();
        SampleGenerator.WriteEmbedded(dir.File("s"));
        foreach (string name in SampleGenerator.FileNames)
        {
            CollectionAssert.AreEqual(SampleGenerator.ReadEmbedded(name), File.ReadAllBytes(Path.Combine(dir.File("s"), name)), name);
        }
        var config = LlamaConfig.Load(dir.File("s"));
        using var model = LlamaForCausalLM.FromPretrained(dir.File("s"));
        var tokenizer = CheckpointTokenizer.Load(dir.File("s"));
        var task = JsonlDataset.Read(Path.Combine(dir.File("s"), SampleGenerator.TaskFileName), TrainingTask.CausalLanguageModeling,
            tokenizer, config.VocabSize, 64);
        Assert.HasCount(400, task);
        Assert.AreEqual(1, task[0].InputIds[0], "BOS first");
        Assert.IsLessThanOrEqualTo(4_000_000, new FileInfo(Path.Combine(dir.File("s"), "model.safetensors")).Length);

        // The pretrained model knows the corpus: its loss on a corpus-style sentence is far below ln(vocab).
        int[] ids = tokenizer.Encode("Anna has a red cat.");
        model.eval();
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var logits = model.call(tensor(ids.Select(i => (long)i).ToArray(), [1, ids.Length]), null);
        var logProbs = nn.functional.log_softmax(logits, -1);
        double nll = 0;
        for (int t = 1; t < ids.Length; t++)
        {
            nll -= logProbs[0, t - 1, ids[t]].item<float>();
        }
        Assert.IsLessThan(0.5 * Math.Log(config.VocabSize), nll / (ids.Length - 1));
    }

    [TestMethod]
    public void Generate_ExistingFolder_ThrowsUnlessOverwrite()
    {
        using var dir = new TrainerTempDir();
        Directory.CreateDirectory(dir.File("s"));
        BadInput.Throws(() => SampleGenerator.Generate(dir.File("s"), Small));
        BadInput.Throws(() => SampleGenerator.WriteEmbedded(dir.File("s")));
        SampleGenerator.WriteEmbedded(dir.File("s"), overwrite: true);
        Assert.IsTrue(File.Exists(Path.Combine(dir.File("s"), "model.safetensors")));
    }
}
