using OnnxLora.Core.HuggingFace;
using OnnxLora.Models.Llama;
using OnnxLora.Models.Tests.Reference;
using static TorchSharp.torch;

namespace OnnxLora.Models.Tests.Models;

[TestClass]
public sealed class LlamaForwardTests
{
    private const double Tolerance = 1e-4;

    private static readonly long[][] Ids = [[5, 17, 3, 42, 9, 11], [7, 7, 63, 1, 30, 2]];

    [TestMethod]
    public void Forward_MultiHeadUntied_MatchesReference()
    {
        var config = TinyConfigs.Llama() with { NumKeyValueHeads = 4 };
        AssertMatchesReference(config, Ids, masks: null, usePositionsFromMask: false);
    }

    [TestMethod]
    public void Forward_GroupedQueryWithRightPadding_MatchesReferenceOnRealTokens()
    {
        var config = TinyConfigs.Llama();
        long[][] masks = [[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]];
        AssertMatchesReference(config, Ids, masks, usePositionsFromMask: false);
    }

    [TestMethod]
    public void Forward_MaskWithoutPaddingAndWindowLongerThanSequence_MatchesReference()
    {
        // Neither the mask nor the window removes a key here, so the attention runs as plain causal (no mask tensor).
        var config = TinyConfigs.Llama() with { ModelType = "mistral", SlidingWindow = 6 };
        long[][] masks = [[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]];
        AssertMatchesReference(config, Ids, masks, usePositionsFromMask: false);
    }

    [TestMethod]
    public void Forward_TiedEmbeddingsWithLeftPaddingAndPositionIds_MatchesReference()
    {
        var config = TinyConfigs.Llama() with { TieWordEmbeddings = true, NumKeyValueHeads = 1 };
        long[][] masks = [[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]];
        AssertMatchesReference(config, Ids, masks, usePositionsFromMask: true);
    }

    [TestMethod]
    public void Forward_Qwen2WithQkvBias_MatchesReference()
    {
        var config = TinyConfigs.Qwen2();
        long[][] masks = [[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]];
        AssertMatchesReference(config, Ids, masks, usePositionsFromMask: false);
    }

    [TestMethod]
    public void Forward_LlamaWithAttentionAndMlpBias_MatchesReference()
    {
        var config = TinyConfigs.Llama() with { AttentionBias = true, MlpBias = true, NumHiddenLayers = 1 };
        AssertMatchesReference(config, Ids, masks: null, usePositionsFromMask: false);
    }

    [TestMethod]
    public void Forward_MistralSlidingWindow_MatchesReference()
    {
        var config = TinyConfigs.Llama() with { ModelType = "mistral", SlidingWindow = 3 };
        AssertMatchesReference(config, Ids, masks: null, usePositionsFromMask: false);
    }

    [TestMethod]
    public void Forward_ExplicitHeadDimDifferentFromHiddenOverHeads_MatchesReference()
    {
        var config = TinyConfigs.Llama() with { HeadDim = 6, NumHiddenLayers = 1 };
        AssertMatchesReference(config, Ids, masks: null, usePositionsFromMask: false);
    }

    private static void AssertMatchesReference(LlamaConfig config, long[][] ids, long[][]? masks, bool usePositionsFromMask)
    {
        using var dir = new TempDir();
        using (var random = LlamaForCausalLM.CreateRandom(config, seed: 1234, std: 0.25))
        {
            random.SaveCheckpoint(dir.Path);
        }
        var weights = Weights.Read(dir.Path);
        using var model = LlamaForCausalLM.FromPretrained(dir.Path);
        model.eval();
        using var scope = NewDisposeScope();
        var idsTensor = tensor(ids.SelectMany(r => r).ToArray(), [ids.Length, ids[0].Length]);
        var maskTensor = masks is null ? null : tensor(masks.SelectMany(r => r).ToArray(), [ids.Length, ids[0].Length]);
        var positions = usePositionsFromMask && maskTensor is not null ? LlamaModel.PositionIdsFromMask(maskTensor) : null;
        float[] logits;
        using (no_grad())
        {
            logits = model.forward(idsTensor, maskTensor, positions).data<float>().ToArray();
        }
        int seq = ids[0].Length, vocab = config.VocabSize;
        double maxDiff = 0;
        for (int b = 0; b < ids.Length; b++)
        {
            long[]? rowPositions = positions is null ? null : positions[b].data<long>().ToArray();
            var expected = LlamaReference.Logits(config, weights, ids[b], masks?[b], rowPositions);
            for (int t = 0; t < seq; t++)
            {
                if (masks is not null && masks[b][t] == 0)
                {
                    continue;
                }
                for (int v = 0; v < vocab; v++)
                {
                    maxDiff = Math.Max(maxDiff, Math.Abs(expected[t][v] - logits[(b * seq + t) * vocab + v]));
                }
            }
        }
        Assert.IsLessThanOrEqualTo(Tolerance, maxDiff, $"max |logits - reference| = {maxDiff:E3}");
        // Guard against a vacuous comparison: the logits must not be trivially small.
        Assert.IsGreaterThan(0.1, (double)logits.Max(Math.Abs));
    }
}
