using OnnxLora.Models.Llama;
using OnnxLora.Models.Peft;

namespace OnnxLora.Generate.Tests;

/// <summary>
/// The eager generator with its key/value cache (prefill, then one token per step) gives the tokens of the plain
/// definition, which runs the whole sequence through the model at every step (no cache), on the sample checkpoint with
/// its LoRA adapter attached unmerged; and it frees every tensor it made.
/// </summary>
[TestClass]
public sealed class EagerGeneratorTests
{
    private const string Prompt = "Anna sees the red cat. =>";

    [TestMethod]
    public void CachedGreedy_EqualsRecomputedGreedy_TokenForToken()
    {
        var (cached, recomputed) = GenerateBoth(new GenerationOptions { MaxNewTokens = 32 });

        Assert.AreEqual(32, cached.Tokens.Count, "32 tokens without an early end of sequence, or the comparison is short: " + cached.Text);
        CollectionAssert.AreEqual(recomputed.Tokens.ToArray(), cached.Tokens.ToArray(), $"recomputed: {recomputed.Text} | cached: {cached.Text}");
    }

    [TestMethod]
    public void CachedSampling_EqualsRecomputedSampling_WithTheSameSeed()
    {
        var (cached, recomputed) = GenerateBoth(new GenerationOptions { MaxNewTokens = 24, Temperature = 1.5, TopK = 40, Seed = 7 });

        CollectionAssert.AreEqual(recomputed.Tokens.ToArray(), cached.Tokens.ToArray(), $"recomputed: {recomputed.Text} | cached: {cached.Text}");
    }

    [TestMethod]
    public void CachedGeneration_LeavesNoTorchTensorAlive()
    {
        using var model = AdaptedSampleModel();
        using var generator = new EagerGenerator(model, tokenizer: null);
        var prompt = new[] { 1, 40, 41, 42, 43 };
        var stats = TorchSharp.DisposeScopeManager.Statistics;

        long before = stats.ThreadTotalLiveCount;
        var shortRun = generator.Generate(prompt, new GenerationOptions { MaxNewTokens = 2 });
        long afterShort = stats.ThreadTotalLiveCount;
        var longRun = generator.Generate(prompt, new GenerationOptions { MaxNewTokens = 20 });
        long afterLong = stats.ThreadTotalLiveCount;

        Assert.AreEqual(2, shortRun.Tokens.Count);
        Assert.IsGreaterThan(2, longRun.Tokens.Count);
        Assert.AreEqual(before, afterShort, "live tensors after a 2-token generation");
        Assert.AreEqual(before, afterLong, "live tensors after a longer generation (cache and per-step tensors freed)");
    }

    private static (GenerationResult Cached, GenerationResult Recomputed) GenerateBoth(GenerationOptions options)
    {
        using var model = AdaptedSampleModel();
        var tokenizer = Training.Data.CheckpointTokenizer.Load(Sample.TinyLlama);
        using var cached = new EagerGenerator(model, tokenizer);
        using var recomputed = new EagerGenerator(model, tokenizer, useKeyValueCache: false);
        var prompt = cached.Encode(Prompt);
        return (cached.Generate(prompt, options), recomputed.Generate(prompt, options));
    }

    /// <summary>The sample checkpoint with its adapter attached (unmerged LoRA layers), in eval mode.</summary>
    private static LlamaForCausalLM AdaptedSampleModel()
    {
        var model = LlamaForCausalLM.FromPretrained(Sample.TinyLlama);
        PeftModelAdapter.Attach(model, Sample.TinyLlamaLora);
        model.eval();
        return model;
    }
}
