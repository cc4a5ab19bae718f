using OnnxLora.Core.HuggingFace;
using OnnxLora.Core.Peft;
using OnnxLora.Models.Llama;
using OnnxLora.Models.Lora;
using OnnxLora.Models.Tests.Reference;
using static TorchSharp.torch;

namespace OnnxLora.Models.Tests.Models;

/// <summary>
/// The cached forward (<see cref="KeyValueCache"/>): a prefill then chunks of new tokens, each continuing the cache,
/// give the logits of one full-sequence pass without a cache (itself checked against the fp64 reference in
/// <see cref="LlamaForwardTests"/>; one case here is also checked against that reference directly), at every real
/// (non-padding) position: left-padded batches, grouped-query attention, a sliding window, LoRA layers attached unmerged.
/// </summary>
[TestClass]
public sealed class LlamaKeyValueCacheTests
{
    private const double Tolerance = 1e-5;
    private const int Total = 9;

    /// <summary>Row 0 left-padded by 2, row 1 full.</summary>
    private static readonly long[][] LeftPadded = [[0, 0, 1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1, 1, 1]];

    [TestMethod]
    [DataRow(new[] { 5, 1, 1, 1, 1 }, DisplayName = "prefill 5, then 4 single tokens")]
    [DataRow(new[] { 4, 3, 1, 1 }, DisplayName = "prefill 4, a chunk of 3, then 2 single tokens")]
    public void CachedSteps_GqaLeftPadded_MatchFullPass(int[] chunks)
    {
        using var model = Model(TinyConfigs.Llama(), seed: 21);
        Assert.AreEqual(2, model.Config.NumAttentionHeads / model.Config.NumKeyValueHeads, "GQA: 4 query heads over 2 kv heads");
        AssertCachedMatchesFull(model, LeftPadded, positionsFromMask: true, chunks);
    }

    [TestMethod]
    public void CachedSteps_LoraAttachedUnmerged_MatchFullPass()
    {
        using var model = Model(TinyConfigs.Llama(), seed: 22);
        AttachLora(model, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]);
        AssertCachedMatchesFull(model, LeftPadded, positionsFromMask: true, [5, 1, 1, 1, 1]);
    }

    [TestMethod]
    public void CachedSteps_Qwen2OneKvHeadWithLora_MatchFullPass()
    {
        using var model = Model(TinyConfigs.Qwen2() with { NumKeyValueHeads = 1 }, seed: 23);
        AttachLora(model, ["q_proj", "v_proj"]);
        AssertCachedMatchesFull(model, LeftPadded, positionsFromMask: true, [5, 1, 1, 1, 1]);
    }

    [TestMethod]
    public void CachedSteps_NoPaddingDefaultPositions_MatchFullPass()
    {
        // No mask and no position ids: the cached forward must place the new tokens at past..past+seq−1 by itself,
        // and a single new token runs without a mask tensor.
        using var model = Model(TinyConfigs.Llama(), seed: 24);
        AssertCachedMatchesFull(model, masks: null, positionsFromMask: false, [5, 1, 1, 1, 1]);
        AssertCachedMatchesFull(model, masks: null, positionsFromMask: false, [3, 4, 2]);
    }

    [TestMethod]
    public void CachedSteps_MistralSlidingWindow_MatchFullPass()
    {
        using var model = Model(TinyConfigs.Llama() with { ModelType = "mistral", SlidingWindow = 3 }, seed: 25);
        AssertCachedMatchesFull(model, masks: null, positionsFromMask: false, [5, 1, 1, 1, 1]);
        AssertCachedMatchesFull(model, LeftPadded, positionsFromMask: true, [4, 3, 1, 1]);
    }

    [TestMethod]
    public void CachedDecode_MatchesFp64Reference()
    {
        var config = TinyConfigs.Llama();
        using var dir = new TempDir();
        using (var random = LlamaForCausalLM.CreateRandom(config, seed: 26, std: 0.25))
        {
            random.SaveCheckpoint(dir.Path);
        }
        var weights = Weights.Read(dir.Path);
        using var model = LlamaForCausalLM.FromPretrained(dir.Path);
        model.eval();
        long[][] ids = Ids(2, config.VocabSize);
        var positions = LeftPadded.Select(Positions).ToArray();

        float[] cached = CachedLogits(model, ids, LeftPadded, positions, [5, 1, 1, 1, 1]);

        double worst = 0;
        for (int b = 0; b < ids.Length; b++)
        {
            var expected = LlamaReference.Logits(config, weights, ids[b], LeftPadded[b], positions[b]);
            for (int t = 0; t < Total; t++)
            {
                if (LeftPadded[b][t] == 1)
                {
                    worst = Math.Max(worst, Enumerable.Range(0, config.VocabSize).Max(v => Math.Abs(expected[t][v] - cached[(((b * Total) + t) * config.VocabSize) + v])));
                }
            }
        }
        Assert.IsLessThanOrEqualTo(1e-4, worst, $"max |cached − fp64 reference| = {worst:E3}");
    }

    [TestMethod]
    public void Cache_HoldsUnrepeatedKvHeadsAndGrowsByEachCall()
    {
        using var model = Model(TinyConfigs.Llama(), seed: 27);
        using var cache = model.CreateCache();
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        Assert.AreEqual(0L, cache.Length);
        Assert.IsNull(cache[0]);

        model.forward(tensor(new long[] { 5, 6, 7, 8, 9, 10 }, [2, 3]), null, null, cache);
        model.forward(tensor(new long[] { 11, 12 }, [2, 1]), null, null, cache);

        Assert.AreEqual(4L, cache.Length);
        for (int i = 0; i < model.Config.NumHiddenLayers; i++)
        {
            var (key, value) = cache[i]!.Value;
            CollectionAssert.AreEqual(new long[] { 2, model.Config.NumKeyValueHeads, 4, model.Config.HeadDim }, key.shape);
            CollectionAssert.AreEqual(key.shape, value.shape);
        }
    }

    [TestMethod]
    public void CachedForward_MaskNotSpanningPastAndNew_IsBadInput()
    {
        using var model = Model(TinyConfigs.Llama(), seed: 28);
        using var cache = model.CreateCache();
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        model.forward(tensor(new long[] { 5, 6, 7 }, [1, 3]), null, null, cache);

        var e = BadInput.Throws(() => model.forward(tensor(new long[] { 8 }, [1, 1]), ones([1, 1], ScalarType.Int64), null, cache));

        StringAssert.Contains(e.Message, "[1, 4]");
    }

    /// <summary>
    /// Runs <paramref name="chunks"/> (token counts adding up to <see cref="Total"/>) through one cache and compares
    /// every real position's logits with one full-sequence pass of the same ids, mask and positions.
    /// </summary>
    private static void AssertCachedMatchesFull(LlamaForCausalLM model, long[][]? masks, bool positionsFromMask, int[] chunks)
    {
        int vocab = model.Config.VocabSize;
        long[][] ids = Ids(2, vocab);
        long[][]? positions = positionsFromMask ? masks!.Select(Positions).ToArray() : null;
        float[] full;
        using (NewDisposeScope())
        using (no_grad())
        {
            full = model.forward(Matrix(ids), masks is null ? null : Matrix(masks), positions is null ? null : Matrix(positions)).data<float>().ToArray();
        }

        float[] cached = CachedLogits(model, ids, masks, positions, chunks);

        double worst = 0;
        for (int i = 0; i < full.Length; i++)
        {
            int position = i / vocab, b = position / Total, t = position % Total;
            if (masks is null || masks[b][t] == 1)
            {
                worst = Math.Max(worst, Math.Abs(full[i] - cached[i]));
            }
        }
        Assert.IsLessThanOrEqualTo(Tolerance, worst, $"max |cached − full| = {worst:E3} (chunks {string.Join(",", chunks)})");
        Assert.IsGreaterThan(0.1, (double)full.Max(Math.Abs), "logits must not be trivially small");
    }

    /// <summary>The logits [2, Total, vocab] of <paramref name="chunks"/> fed one after another through one cache.</summary>
    private static float[] CachedLogits(LlamaForCausalLM model, long[][] ids, long[][]? masks, long[][]? positions, int[] chunks)
    {
        Assert.AreEqual(Total, chunks.Sum());
        using var cache = model.CreateCache();
        using var noGrad = no_grad();
        var logits = new List<float[]>();
        int done = 0;
        foreach (int chunk in chunks)
        {
            using var scope = NewDisposeScope();
            var step = model.forward(
                Matrix(ids, done, done + chunk),
                masks is null ? null : Matrix(masks, 0, done + chunk),
                positions is null ? null : Matrix(positions, done, done + chunk),
                cache);
            logits.Add(step.data<float>().ToArray());
            done += chunk;
            Assert.AreEqual(done, cache.Length);
        }
        // Reassemble [2, Total, vocab] from the chunks' [2, chunk, vocab].
        int vocab = model.Config.VocabSize;
        var all = new float[2 * Total * vocab];
        int start = 0;
        for (int c = 0; c < chunks.Length; c++)
        {
            for (int b = 0; b < 2; b++)
            {
                Array.Copy(logits[c], b * chunks[c] * vocab, all, ((b * Total) + start) * vocab, chunks[c] * vocab);
            }
            start += chunks[c];
        }
        return all;
    }

    private static LlamaForCausalLM Model(LlamaConfig config, long seed)
    {
        var model = LlamaForCausalLM.CreateRandom(config, seed, std: 0.25);
        model.eval();
        return model;
    }

    /// <summary>LoRA on <paramref name="targets"/> with B drawn at random (PEFT starts it at zero, which would change nothing).</summary>
    private static void AttachLora(LlamaForCausalLM model, string[] targets)
    {
        LoraInjection.Apply(model, new PeftAdapterConfig { TargetModules = TargetModules.FromList(targets), R = 4, Alpha = 8 }, seed: 3);
        using var generator = new Generator(4);
        using var noGrad = no_grad();
        foreach (var (_, layer) in LoraInjection.LoraLayers(model))
        {
            ((LoraLinear)layer).LoraB.normal_(0, 0.3, generator);
        }
    }

    private static long[][] Ids(int batch, long vocab)
    {
        var random = new Random(17);
        return [.. Enumerable.Range(0, batch).Select(_ => Enumerable.Range(0, Total).Select(_ => (long)random.Next(3, (int)vocab)).ToArray())];
    }

    /// <summary>Hugging Face's position ids under padding, written here: count of real tokens so far − 1, 0 at padding.</summary>
    private static long[] Positions(long[] mask)
    {
        long seen = 0;
        return [.. mask.Select(m => Math.Max(0, (seen += m) - 1))];
    }

    private static Tensor Matrix(long[][] rows, int from = 0, int to = Total) =>
        tensor(rows.SelectMany(r => r[from..to]).ToArray(), [rows.Length, to - from]);
}
