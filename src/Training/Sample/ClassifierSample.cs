using System.Globalization;
using System.Text;
using OnnxLora.Core;
using OnnxLora.Core.IO;
using OnnxLora.Models;
using OnnxLora.Models.Bert;
using OnnxLora.Training.Data.Internals;

namespace OnnxLora.Training.Sample;

/// <summary>
/// The project's small BERT classification sample, made by code (committed as models/tiny-bert-cls): a
/// <c>BertForSequenceClassification</c> checkpoint (a seeded random encoder, hidden 64, 2 layers, 2 segment
/// types, and a fresh 2-label head, as transformers gives a new head) and a pre-tokenized task
/// (<c>task.jsonl</c>, rows <c>{"input_ids": [...], "label": 0|1}</c>) that no untrained head solves: a label-1 row
/// draws seven in eight of its tokens from the low half of the content ids, a label-0 row from the high half. A short LoRA
/// run (<c>merge-export run --model models/tiny-bert-cls</c>) learns it, so validation shows the accuracy
/// the adapter bought.
/// </summary>
public static class ClassifierSample
{
    /// <summary>The committed sample's folder name under models/.</summary>
    public const string DefaultName = "tiny-bert-cls";

    /// <summary>The seed of the committed sample.</summary>
    public const int DefaultSeed = 1234;

    /// <summary>Rows of task.jsonl.</summary>
    public const int TaskLines = 400;

    /// <summary>
    /// The encoder's weight scale. Hugging Face's 0.02 leaves an untrained encoder's pooled state nearly
    /// constant (tanh of tiny values); 0.1 gives features a short LoRA run can use.
    /// </summary>
    private const double EncoderStd = 0.1;

    private const int ClsId = 2, SepId = 3, FirstContentId = 4;

    /// <summary>The sample's config: <see cref="TinyConfigs.Bert"/> widened to hidden 64 / intermediate 128, 64 positions.</summary>
    public static Core.HuggingFace.BertConfig Config() => TinyConfigs.Bert() with
    {
        Architectures = [BertForSequenceClassification.ArchitectureName],
        HiddenSize = 64,
        IntermediateSize = 128,
        MaxPositionEmbeddings = 64,
    };

    /// <summary>Writes config.json, model.safetensors and task.jsonl into <paramref name="directory"/>, which appears only when complete.</summary>
    /// <exception cref="OnnxLoraException">Bad input: the folder exists and <paramref name="overwrite"/> is false.</exception>
    public static void Generate(string directory, int seed = DefaultSeed, bool overwrite = false)
    {
        using var folder = AtomicDirectory.Create(directory, overwrite);
        using (var model = new BertForSequenceClassification(BertModel.CreateRandom(Config(), seed, std: EncoderStd), numLabels: 2, seed))
        {
            GiveTheVocabularyHalvesADirection(model.Bert, seed);
            model.SaveCheckpoint(folder.TempPath);
        }
        File.WriteAllBytes(Path.Combine(folder.TempPath, SampleGenerator.TaskFileName), TaskJsonl(seed, Config().VocabSize));
        folder.Commit();
    }

    /// <summary>
    /// What pretraining would have taught the encoder, in one stroke: the word embeddings of the low and the high
    /// half of the content ids get a shared direction of opposite signs (as a sentiment model's embeddings separate
    /// positive and negative words), so the encoder's states carry the feature the task asks about and a short
    /// LoRA run can learn to read it. The head stays untrained.
    /// </summary>
    private static void GiveTheVocabularyHalvesADirection(BertModel bert, int seed)
    {
        using var scope = TorchSharp.torch.NewDisposeScope();
        using var noGrad = TorchSharp.torch.no_grad();
        using var generator = new TorchSharp.torch.Generator(unchecked((ulong)seed ^ 0xD1EC7105UL));
        var weight = ((TorchSharp.Modules.Embedding)bert.Embeddings.WordEmbeddings).weight!;
        long vocab = weight.shape[0];
        var direction = TorchSharp.torch.randn([weight.shape[1]], generator: generator) * EncoderStd;
        int middle = (FirstContentId + (int)vocab) / 2;
        weight[TorchSharp.torch.TensorIndex.Slice(FirstContentId, middle)].add_(direction);
        weight[TorchSharp.torch.TensorIndex.Slice(middle, vocab)].sub_(direction);
    }

    /// <summary>[CLS] w₁ … wₙ [SEP] with n in 4..12; each wᵢ of a label-1 row is from the low half of the content ids with probability 7/8, of a label-0 row from the high half.</summary>
    internal static byte[] TaskJsonl(int seed, int vocabSize)
    {
        var random = new DeterministicRandom(seed, stream: 7);
        int middle = (FirstContentId + vocabSize) / 2;
        var sb = new StringBuilder();
        for (int row = 0; row < TaskLines; row++)
        {
            int label = row % 2;
            int length = 4 + random.NextInt(9);
            var ids = new List<int> { ClsId };
            for (int k = 0; k < length; k++)
            {
                // Seven in eight tokens from the label's half, the rest from the other half.
                bool low = (label == 1) == (random.NextInt(8) != 0);
                ids.Add(low ? FirstContentId + random.NextInt(middle - FirstContentId) : middle + random.NextInt(vocabSize - middle));
            }
            ids.Add(SepId);
            sb.Append(CultureInfo.InvariantCulture, $"{{\"input_ids\": [{string.Join(", ", ids)}], \"label\": {label}}}\n");
        }
        return Encoding.UTF8.GetBytes(sb.ToString());
    }
}
