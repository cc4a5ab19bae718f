using OnnxLora.Core;
using OnnxLora.Core.HuggingFace;
using OnnxLora.Core.Safetensors;
using OnnxLora.Models.Bert;
using OnnxLora.Models.Tests.Reference;
using static TorchSharp.torch;

namespace OnnxLora.Models.Tests.Models;

[TestClass]
public sealed class BertForwardTests
{
    private const double Tolerance = 1e-4;

    private static readonly long[][] Ids = [[2, 17, 3, 42, 9, 11, 5], [2, 7, 63, 1, 30, 0, 0]];
    private static readonly long[][] Masks = [[1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0, 0]];
    private static readonly long[][] Types = [[0, 0, 0, 1, 1, 1, 1], [0, 0, 1, 1, 1, 0, 0]];

    [TestMethod]
    public void Forward_WithPaddingAndTokenTypes_MatchesReference()
    {
        using var dir = new TempDir();
        var config = TinyConfigs.Bert();
        using (var random = BertModel.CreateRandom(config, seed: 77, std: 0.3))
        {
            random.SaveCheckpoint(dir.Path);
        }
        AssertMatchesReference(dir.Path, config, Weights.Read(dir.Path), prefix: "", types: Types);
    }

    [TestMethod]
    public void Forward_WithoutMaskOrTokenTypes_MatchesReference()
    {
        using var dir = new TempDir();
        var config = TinyConfigs.Bert() with { NumHiddenLayers = 1, IntermediateSize = 64 };
        using (var random = BertModel.CreateRandom(config, seed: 5, std: 0.3))
        {
            random.SaveCheckpoint(dir.Path);
        }
        var weights = Weights.Read(dir.Path);
        using var model = BertModel.FromPretrained(dir.Path);
        model.eval();
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var output = model.forward(tensor(Ids[0], [1, Ids[0].Length]), null).data<float>().ToArray();
        var expected = BertReference.LastHiddenState(config, weights, Ids[0]);
        double maxDiff = expected.SelectMany((row, t) => row.Select((v, i) => Math.Abs(v - output[t * config.HiddenSize + i]))).Max();
        Assert.IsLessThanOrEqualTo(Tolerance, maxDiff);
    }

    [TestMethod]
    public void FromPretrained_BertForXCheckpointWithPrefixHeadAndGammaBeta_LoadsEncoderAndMatchesReference()
    {
        using var source = new TempDir();
        using var dir = new TempDir();
        var config = TinyConfigs.Bert();
        using (var random = BertModel.CreateRandom(config, seed: 9, std: 0.3))
        {
            random.SaveCheckpoint(source.Path);
        }
        // Re-store as a BertForSequenceClassification checkpoint: "bert." prefix, old LayerNorm names,
        // a classifier head and the position_ids buffer.
        var tensors = new List<(TensorSpec, ReadOnlyMemory<byte>)>();
        using (var checkpoint = SafetensorsCheckpoint.Open(source.Path))
        {
            foreach (var t in checkpoint.Tensors)
            {
                string name = "bert." + t.Name.Replace("LayerNorm.weight", "LayerNorm.gamma", StringComparison.Ordinal).Replace("LayerNorm.bias", "LayerNorm.beta", StringComparison.Ordinal);
                var (file, info) = checkpoint.Locate(t.Name);
                tensors.Add((new TensorSpec(name, t.DType, t.Shape), file.GetBytes(info).ToArray()));
            }
        }
        tensors.Add((new TensorSpec("classifier.weight", DType.F32, [3, config.HiddenSize]), new byte[3 * config.HiddenSize * 4]));
        tensors.Add((new TensorSpec("bert.embeddings.position_ids", DType.I64, [1, config.MaxPositionEmbeddings]), new byte[config.MaxPositionEmbeddings * 8]));
        SafetensorsWriter.Save(Path.Combine(dir.Path, "model.safetensors"), tensors);
        (config with { Architectures = ["BertForSequenceClassification"] }).Save(dir.Path);

        var weights = Weights.Read(source.Path);
        AssertMatchesReference(dir.Path, config, weights, prefix: "", types: null);
    }

    private static void AssertMatchesReference(string dir, BertConfig config, Weights weights, string prefix, long[][]? types)
    {
        using var model = BertModel.FromPretrained(dir);
        model.eval();
        Assert.IsNotNull(model.Pooler);
        using var scope = NewDisposeScope();
        int batch = Ids.Length, seq = Ids[0].Length, hidden = config.HiddenSize;
        var ids = tensor(Ids.SelectMany(r => r).ToArray(), [batch, seq]);
        var mask = tensor(Masks.SelectMany(r => r).ToArray(), [batch, seq]);
        var tokenTypes = types is null ? null : tensor(types.SelectMany(r => r).ToArray(), [batch, seq]);
        float[] output, pooled;
        using (no_grad())
        {
            var last = model.forward(ids, mask, tokenTypes);
            output = last.data<float>().ToArray();
            pooled = model.Pool(last).data<float>().ToArray();
        }
        double maxDiff = 0;
        for (int b = 0; b < batch; b++)
        {
            var expected = BertReference.LastHiddenState(config, weights, Ids[b], Masks[b], types?[b], prefix);
            for (int t = 0; t < seq; t++)
            {
                if (Masks[b][t] == 0)
                {
                    continue;
                }
                for (int i = 0; i < hidden; i++)
                {
                    maxDiff = Math.Max(maxDiff, Math.Abs(expected[t][i] - output[(b * seq + t) * hidden + i]));
                }
            }
            var expectedPooled = BertReference.Pooled(config, weights, expected, prefix);
            for (int i = 0; i < hidden; i++)
            {
                maxDiff = Math.Max(maxDiff, Math.Abs(expectedPooled[i] - pooled[b * hidden + i]));
            }
        }
        Assert.IsLessThanOrEqualTo(Tolerance, maxDiff, $"max |output - reference| = {maxDiff:E3}");
        Assert.IsGreaterThan(0.5, (double)output.Max(Math.Abs));
    }
}
