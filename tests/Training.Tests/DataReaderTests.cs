using OnnxLora.Training.Data;
using OnnxLora.Training.Data.Internals;
using OnnxLora.Training.Sample.Internals;

namespace OnnxLora.Training.Tests;

[TestClass]
public sealed class DataReaderTests
{
    [TestMethod]
    public void Read_InputIdsLines_KeepsIdsSkipsBlankLinesAndTruncates()
    {
        using var dir = new TrainerTempDir();
        string path = dir.File("d.jsonl");
        File.WriteAllText(path, "{\"input_ids\": [1, 2, 3]}\n\n   \n{\"input_ids\": [4, 5, 6, 7, 8, 9], \"extra\": \"ignored\"}\n");
        var data = JsonlDataset.Read(path, TrainingTask.CausalLanguageModeling, null, vocabSize: 10, maxLength: 4);
        Assert.HasCount(2, data);
        CollectionAssert.AreEqual(new[] { 1, 2, 3 }, data[0].InputIds.ToArray());
        CollectionAssert.AreEqual(new[] { 4, 5, 6, 7 }, data[1].InputIds.ToArray());
        Assert.AreEqual(1, data[0].Line);
        Assert.AreEqual(4, data[1].Line);
        Assert.IsNull(data[0].Label);
    }

    [TestMethod]
    public void Read_TextLines_TokenizeWithTheCheckpointTokenizer()
    {
        using var dir = new TrainerTempDir();
        var merges = BpeTrainer.Train(["the cat sees the dog", "the dog sees the cat"], 20);
        File.WriteAllBytes(dir.File("tokenizer.json"), SampleTokenizerFiles.TokenizerJson(merges));
        var tok = CheckpointTokenizer.Load(dir.Path);
        string path = dir.File("d.jsonl");
        File.WriteAllText(path, "{\"text\": \"the cat\", \"label\": 1}\n{\"input_ids\": [7, 8], \"label\": 0}\n");
        var data = JsonlDataset.Read(path, TrainingTask.SequenceClassification, tok, SampleTokenizerFiles.VocabSize(merges.Count), 64, numLabels: 2);
        CollectionAssert.AreEqual(tok.Encode("the cat"), data[0].InputIds.ToArray());
        Assert.AreEqual(SampleTokenizerFiles.BosId, data[0].InputIds[0]);
        Assert.AreEqual(1, data[0].Label);
        Assert.AreEqual(0, data[1].Label);
    }

    [TestMethod]
    [DataRow("{\"input_ids\": [1, 2", "not valid JSON")]
    [DataRow("[1, 2, 3]", "found Array, expected a JSON object")]
    [DataRow("{\"input_ids\": [1, 99]}", "\"input_ids\"[1]: found 99, expected an integer in [0, 10)")]
    [DataRow("{\"input_ids\": [1, -1]}", "\"input_ids\"[1]: found -1")]
    [DataRow("{\"input_ids\": [1, 2.5]}", "\"input_ids\"[1]: found 2.5")]
    [DataRow("{\"input_ids\": \"1 2\"}", "\"input_ids\": found String, expected an array")]
    [DataRow("{\"input_ids\": [3]}", "sequence length: found 1 tokens, expected at least 2")]
    [DataRow("{\"label\": 1}", "found neither \"text\" nor \"input_ids\"")]
    [DataRow("{\"text\": \"a\", \"input_ids\": [1, 2]}", "found both")]
    [DataRow("{\"text\": \"hello\"}", "needs the checkpoint's tokenizer.json")]
    public void Read_MalformedLine_ThrowsNamingFileAndLine(string badLine, string expectedFragment)
    {
        using var dir = new TrainerTempDir();
        string path = dir.File("bad.jsonl");
        File.WriteAllText(path, "{\"input_ids\": [1, 2]}\n" + badLine + "\n{\"input_ids\": [1, 2]}\n");
        var e = BadInput.Throws(() =>
            JsonlDataset.Read(path, TrainingTask.CausalLanguageModeling, null, vocabSize: 10, maxLength: 8));
        StringAssert.StartsWith(e.Message, path + ": line 2: ");
        StringAssert.Contains(e.Message, expectedFragment);
    }

    [TestMethod]
    [DataRow("{\"input_ids\": [1, 2]}", "\"label\": found (missing)")]
    [DataRow("{\"input_ids\": [1, 2], \"label\": 3}", "\"label\": found 3, expected an integer in [0, 3)")]
    [DataRow("{\"input_ids\": [1, 2], \"label\": \"pos\"}", "\"label\": found \"pos\"")]
    public void Read_ClassificationLineWithBadLabel_ThrowsNamingFileAndLine(string badLine, string expectedFragment)
    {
        using var dir = new TrainerTempDir();
        string path = dir.File("bad.jsonl");
        File.WriteAllText(path, badLine + "\n");
        var e = BadInput.Throws(() =>
            JsonlDataset.Read(path, TrainingTask.SequenceClassification, null, vocabSize: 10, maxLength: 8, numLabels: 3));
        StringAssert.StartsWith(e.Message, path + ": line 1: ");
        StringAssert.Contains(e.Message, expectedFragment);
    }

    [TestMethod]
    public void Read_EmptyFile_ThrowsNamingTheFile()
    {
        using var dir = new TrainerTempDir();
        string path = dir.File("empty.jsonl");
        File.WriteAllText(path, "\n\n");
        var e = BadInput.Throws(() =>
            JsonlDataset.Read(path, TrainingTask.CausalLanguageModeling, null, 10, 8));
        StringAssert.Contains(e.Message, path);
        StringAssert.Contains(e.Message, "no examples");
    }

    [TestMethod]
    public void Read_MissingFile_IsBadInput()
    {
        using var dir = new TrainerTempDir();
        BadInput.Throws(() =>
            JsonlDataset.Read(dir.File("nope.jsonl"), TrainingTask.CausalLanguageModeling, null, 10, 8));
    }

    [TestMethod]
    public void Split_SameSeed_SameParts_DifferentSeed_DifferentParts_AndPartsPartitionTheData()
    {
        var examples = Enumerable.Range(0, 50).Select(i => new TrainingExample([i, i], null, i + 1)).ToList();
        var (trainA, evalA) = Batching.Split(examples, 0.2, seed: 7);
        var (trainB, evalB) = Batching.Split(examples, 0.2, seed: 7);
        var (_, evalC) = Batching.Split(examples, 0.2, seed: 8);

        Assert.HasCount(10, evalA);
        Assert.HasCount(40, trainA);
        CollectionAssert.AreEqual(evalA.Select(e => e.Line).ToList(), evalB.Select(e => e.Line).ToList());
        CollectionAssert.AreEqual(trainA.Select(e => e.Line).ToList(), trainB.Select(e => e.Line).ToList());
        CollectionAssert.AreNotEqual(evalA.Select(e => e.Line).ToList(), evalC.Select(e => e.Line).ToList());
        CollectionAssert.AreEquivalent(examples.Select(e => e.Line).ToList(), trainA.Concat(evalA).Select(e => e.Line).ToList());
    }

    [TestMethod]
    public void Split_TinyData_KeepsAtLeastOneExampleOnEachSide()
    {
        var examples = Enumerable.Range(0, 3).Select(i => new TrainingExample([i, i], null, i + 1)).ToList();
        var (train, eval) = Batching.Split(examples, 0.05, seed: 1);
        Assert.HasCount(1, eval);
        Assert.HasCount(2, train);
        var (trainAll, evalNone) = Batching.Split(examples, 0, seed: 1);
        Assert.IsEmpty(evalNone);
        Assert.HasCount(3, trainAll);
    }

    [TestMethod]
    public void EpochOrder_IsAPermutationFixedBySeedAndEpoch()
    {
        int[] a = Batching.EpochOrder(100, seed: 3, epoch: 0);
        int[] b = Batching.EpochOrder(100, seed: 3, epoch: 0);
        int[] c = Batching.EpochOrder(100, seed: 3, epoch: 1);
        CollectionAssert.AreEqual(a, b);
        CollectionAssert.AreNotEqual(a, c);
        CollectionAssert.AreEquivalent(Enumerable.Range(0, 100).ToArray(), a);
        CollectionAssert.AreNotEqual(Enumerable.Range(0, 100).ToArray(), a);
    }

    [TestMethod]
    public void Collate_PadsOnTheRightWithThePadIdAndMasksPadding()
    {
        var batch = Batching.Collate([new TrainingExample([5, 6, 7], 1), new TrainingExample([8], 0)], padId: 2);
        Assert.AreEqual(2, batch.Rows);
        Assert.AreEqual(3, batch.Columns);
        CollectionAssert.AreEqual(new long[] { 5, 6, 7, 8, 2, 2 }, batch.InputIds);
        CollectionAssert.AreEqual(new long[] { 1, 1, 1, 1, 0, 0 }, batch.AttentionMask);
        CollectionAssert.AreEqual(new long[] { 1, 0 }, batch.Labels);
        Assert.AreEqual(4, batch.Tokens);
        Assert.AreEqual(2, batch.PredictedTokens);
    }
}
