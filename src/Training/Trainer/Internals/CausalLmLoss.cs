using static TorchSharp.torch;

namespace OnnxLora.Training.TrainerInternals;

/// <summary>Next-token cross-entropy, summed over the predicted positions of a right-padded batch.</summary>
internal static class CausalLmLoss
{
    /// <summary>
    /// Σ −log softmax(logits[b, t−1])[ids[b, t]] over every (b, t ≥ 1) whose token is real
    /// (mask 1); padding positions are never targets.
    /// </summary>
    /// <param name="logits">[batch, seq, vocab].</param>
    /// <param name="ids">[batch, seq] int64.</param>
    /// <param name="mask">[batch, seq] 0/1.</param>
    public static Tensor Summed(Tensor logits, Tensor ids, Tensor mask)
    {
        using var scope = NewDisposeScope();
        long seq = ids.shape[1];
        long vocab = logits.shape[2];
        var predictions = logits.narrow(1, 0, seq - 1).reshape(-1, vocab);
        var targets = ids.narrow(1, 1, seq - 1).masked_fill(mask.narrow(1, 1, seq - 1).eq(0), IgnoreIndex).reshape(-1);
        return nn.functional.cross_entropy(predictions, targets, ignore_index: IgnoreIndex, reduction: nn.Reduction.Sum)
            .MoveToOuterDisposeScope();
    }

    private const long IgnoreIndex = -100;
}
