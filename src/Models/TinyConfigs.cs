using OnnxLora.Core.HuggingFace;

namespace OnnxLora.Models;

/// <summary>
/// Small valid configs for tests, samples and benchmarks (hidden 32, 2 layers, vocab 64). Change
/// fields with <c>with</c>; make a checkpoint with e.g.
/// <c>LlamaForCausalLM.CreateRandom(TinyConfigs.Llama(), seed).SaveCheckpoint(dir)</c>.
/// </summary>
public static class TinyConfigs
{
    /// <summary>A LLaMA config: hidden 32, 4 heads of 8, 2 key/value heads (GQA), intermediate 48, 2 layers, vocab 64, untied.</summary>
    public static LlamaConfig Llama() => new()
    {
        ModelType = "llama",
        Architectures = ["LlamaForCausalLM"],
        VocabSize = 64,
        HiddenSize = 32,
        IntermediateSize = 48,
        NumHiddenLayers = 2,
        NumAttentionHeads = 4,
        NumKeyValueHeads = 2,
        MaxPositionEmbeddings = 128,
        RmsNormEps = 1e-6,
        RopeTheta = 10000.0,
        BosTokenId = 1,
        EosTokenIds = [2],
        PadTokenId = 0,
        TorchDtype = "float32",
    };

    /// <summary>A Qwen2 config (q/k/v bias, tied embeddings) of the same size as <see cref="Llama"/>.</summary>
    public static LlamaConfig Qwen2() => Llama() with
    {
        ModelType = "qwen2",
        Architectures = ["Qwen2ForCausalLM"],
        TieWordEmbeddings = true,
        RopeTheta = 1000000.0,
    };

    /// <summary>A BERT config: hidden 32, 4 heads, intermediate 48, 2 layers, vocab 64, 32 positions, 2 token types.</summary>
    public static BertConfig Bert() => new()
    {
        Architectures = ["BertModel"],
        VocabSize = 64,
        HiddenSize = 32,
        NumHiddenLayers = 2,
        NumAttentionHeads = 4,
        IntermediateSize = 48,
        MaxPositionEmbeddings = 32,
        TypeVocabSize = 2,
        LayerNormEps = 1e-12,
        PadTokenId = 0,
        TorchDtype = "float32",
    };
}
