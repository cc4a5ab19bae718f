using OnnxLora.Core.HuggingFace;
using OnnxLora.Models.Internals;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace OnnxLora.Models.Bert;

/// <summary>
/// BERT input embeddings: LayerNorm(word[ids] + position[0..seq) + token_type[types]), then dropout
/// (training only). Children: <c>word_embeddings</c>, <c>position_embeddings</c>,
/// <c>token_type_embeddings</c> (Embeddings or LoRA wrappers), <c>LayerNorm</c>.
/// </summary>
public sealed partial class BertEmbeddings : nn.Module<Tensor, Tensor?, Tensor>, IChildReplaceable
{
    public BertEmbeddings(BertConfig config) : base(nameof(BertEmbeddings))
    {
        Config = config;
        WordEmbeddings = LayerFactory.Embedding(config.VocabSize, config.HiddenSize, LayerFactory.PaddingIndex(config.PadTokenId, config.VocabSize));
        PositionEmbeddings = LayerFactory.Embedding(config.MaxPositionEmbeddings, config.HiddenSize, null);
        TokenTypeEmbeddings = LayerFactory.Embedding(config.TypeVocabSize, config.HiddenSize, null);
        LayerNorm = LayerFactory.LayerNorm(config.HiddenSize, config.LayerNormEps);
        RegisterComponents();
    }

    public BertConfig Config { get; }

    [field: ComponentName(Name = "word_embeddings")]
    public nn.Module<Tensor, Tensor> WordEmbeddings { get; private set; }

    [field: ComponentName(Name = "position_embeddings")]
    public nn.Module<Tensor, Tensor> PositionEmbeddings { get; private set; }

    [field: ComponentName(Name = "token_type_embeddings")]
    public nn.Module<Tensor, Tensor> TokenTypeEmbeddings { get; private set; }

    [field: ComponentName(Name = "LayerNorm")]
    public LayerNorm LayerNorm { get; }

    /// <param name="inputIds">[batch, seq] int64.</param>
    /// <param name="tokenTypeIds">[batch, seq] int64 segment ids, or null for all zeros.</param>
    public override Tensor forward(Tensor inputIds, Tensor? tokenTypeIds)
    {
        using var scope = NewDisposeScope();
        long batch = inputIds.shape[0], seq = inputIds.shape[1];
        var positions = arange(seq, ScalarType.Int64, inputIds.device).unsqueeze(0).expand(batch, seq);
        tokenTypeIds ??= zeros([batch, seq], ScalarType.Int64, inputIds.device);
        var sum = WordEmbeddings.call(inputIds) + PositionEmbeddings.call(positions) + TokenTypeEmbeddings.call(tokenTypeIds);
        var output = LayerNorm.call(sum);
        if (training && Config.HiddenDropoutProb > 0)
        {
            output = nn.functional.dropout(output, Config.HiddenDropoutProb, training: true);
        }
        return output.MoveToOuterDisposeScope();
    }

    void IChildReplaceable.ReplaceChild(string name, nn.Module<Tensor, Tensor> replacement)
    {
        switch (name)
        {
            case "word_embeddings": WordEmbeddings = replacement; break;
            case "position_embeddings": PositionEmbeddings = replacement; break;
            case "token_type_embeddings": TokenTypeEmbeddings = replacement; break;
            default: throw ModelThrow.Misuse(nameof(name), $"{nameof(BertEmbeddings)} has no replaceable child '{name}'");
        }
        _internal_submodules[name] = replacement;
    }
}
