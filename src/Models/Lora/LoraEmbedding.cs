using OnnxLora.Core.Peft;
using OnnxLora.Models.Internals;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace OnnxLora.Models.Lora;

/// <summary>
/// An Embedding with a LoRA adapter (PEFT's lora.Embedding): out = E[x] + s·(Aᵀ[x])·Bᵀ, i.e.
/// ΔE = (B·A)ᵀ·s, with A = <c>lora_embedding_A</c> [r, num_embeddings] and B = <c>lora_embedding_B</c>
/// [embedding_dim, r]. PEFT initialises A to zeros and B to N(0, 1), so a fresh adapter changes nothing.
/// No dropout (PEFT applies none to embeddings). Registered: <c>base_layer.weight</c> (frozen),
/// <c>lora_embedding_A</c>, <c>lora_embedding_B</c>.
/// </summary>
public sealed partial class LoraEmbedding : LoraLayer
{
    /// <summary>Wraps <paramref name="baseLayer"/>; B is drawn from <paramref name="generator"/> (the global generator when null).</summary>
    public LoraEmbedding(Embedding baseLayer, int rank, double alpha, bool useRsLora = false, Generator? generator = null) : base(nameof(LoraEmbedding))
    {
        ArgumentNullException.ThrowIfNull(baseLayer);
        LoraChecks.RankAlphaDropout(rank, alpha, 0.0);
        BaseLayer = baseLayer;
        Rank = rank;
        Alpha = alpha;
        UseRsLora = useRsLora;
        NumEmbeddings = baseLayer.weight!.shape[0];
        EmbeddingDim = baseLayer.weight!.shape[1];
        LoraEmbeddingA = new Parameter(zeros(rank, NumEmbeddings));
        LoraEmbeddingB = new Parameter(empty(EmbeddingDim, rank));
        using (no_grad())
        {
            LoraEmbeddingB.normal_(0, 1, generator);
        }
        RegisterComponents();
    }

    /// <summary><c>base_layer</c>: the wrapped Embedding (E [num_embeddings, dim]), frozen by injection.</summary>
    [field: ComponentName(Name = "base_layer")]
    public Embedding BaseLayer { get; }

    /// <summary><c>lora_embedding_A</c> [r, num_embeddings].</summary>
    [field: ComponentName(Name = "lora_embedding_A")]
    public Parameter LoraEmbeddingA { get; }

    /// <summary><c>lora_embedding_B</c> [embedding_dim, r].</summary>
    [field: ComponentName(Name = "lora_embedding_B")]
    public Parameter LoraEmbeddingB { get; }

    /// <summary>The base embedding matrix E [num_embeddings, dim].</summary>
    public override Parameter Weight => LayerFactory.RegisteredWeight(BaseLayer);

    public long NumEmbeddings { get; }

    public long EmbeddingDim { get; }

    /// <inheritdoc/>
    public override ModuleUpdate Update() => ModuleUpdate.LoraEmbedding(nameof(LoraEmbedding), LoraLayerMerge.Singles(LoraEmbeddingA), LoraLayerMerge.Singles(LoraEmbeddingB),
        Rank, Scaling, checked((int)NumEmbeddings), checked((int)EmbeddingDim));

    public override Tensor forward(Tensor input)
    {
        using var scope = NewDisposeScope();
        var result = BaseLayer.call(input);
        if (!AdapterEnabled)
        {
            return result.MoveToOuterDisposeScope();
        }
        var rows = LoraEmbeddingA.t().index_select(0, input.reshape(-1));
        var afterA = rows.reshape([.. input.shape, Rank]);
        var delta = afterA.matmul(LoraEmbeddingB.t()) * Scaling;
        return (result + delta).MoveToOuterDisposeScope();
    }
}
