using static TorchSharp.torch;

namespace OnnxLora.Models.Internals;

/// <summary>
/// Gradient (activation) checkpointing of one block, as PyTorch's reentrant
/// <c>torch.utils.checkpoint.checkpoint</c> does it: the forward runs without autograd and keeps only the
/// block's inputs; the backward restores the generator state the forward started from (so dropout draws
/// the same masks), runs the forward again with autograd, and back-propagates through it. Gradients of the
/// block's parameters accumulate into their <c>.grad</c> during that inner backward, so the outer
/// backward must be a plain <c>backward()</c> (not <c>autograd.grad</c>), as with PyTorch's reentrant variant.
/// </summary>
/// <remarks>
/// Hand-written because TorchSharp 0.107 has no checkpoint function; it is built on TorchSharp's custom
/// autograd function (<see cref="autograd.SingleTensorFunction{T}"/>).
/// </remarks>
internal static class GradientCheckpoint
{
    /// <summary>Restore the generator state in backward (always, outside the test that plants its omission as a bug).</summary>
    internal static bool ReplayRng { get; set; } = true;

    /// <summary>
    /// <paramref name="block"/>(<paramref name="hidden"/>, <paramref name="constants"/>), checkpointed. Only
    /// <paramref name="hidden"/> receives a gradient; <paramref name="constants"/> (rotary tables, masks; null
    /// allowed) must not need one.
    /// </summary>
    public static Tensor Apply(Func<Tensor, Tensor?[], Tensor> block, Tensor hidden, params Tensor?[] constants)
    {
        // With frozen embeddings the first block's input needs no gradient, and a function none of whose inputs
        // need one is left out of the graph, losing the LoRA gradients inside it; transformers makes the
        // embedding output require grad for this (enable_input_require_grads), we do it at the block's input.
        var input = hidden.requires_grad ? hidden : hidden.detach().requires_grad_(true);
        return CheckpointFunction.apply([block, input, .. constants]);
    }

    /// <summary>The autograd node; PyTorch calls its reentrant implementation CheckpointFunction too.</summary>
    private sealed class CheckpointFunction : autograd.SingleTensorFunction<CheckpointFunction>
    {
        private const string BlockKey = "block";
        private const string RngKey = "rng";

        public override string Name => nameof(CheckpointFunction);

        /// <summary>vars: the block, the hidden input, then the constants.</summary>
        public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
        {
            var block = (Func<Tensor, Tensor?[], Tensor>)vars[0];
            var tensors = vars.Skip(1).Select(v => v as Tensor).ToList();
            ctx.save_data(BlockKey, block);
            ctx.save_data(RngKey, TorchRng.Capture());
            ctx.save_for_backward(tensors!);
            return block(tensors[0]!, [.. tensors.Skip(1)]);
        }

        public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad_output)
        {
            var block = (Func<Tensor, Tensor?[], Tensor>)ctx.get_data(BlockKey);
            var saved = ctx.get_saved_variables();
            var resume = TorchRng.Capture();
            Tensor inputGrad;
            using (var scope = NewDisposeScope())
            {
                if (ReplayRng)
                {
                    TorchRng.Restore((byte[])ctx.get_data(RngKey));
                }
                try
                {
                    using var grad = enable_grad();
                    var input = saved[0].detach().requires_grad_(true);
                    var output = block(input, [.. saved.Skip(1)]);
                    autograd.backward([output], [grad_output]);
                    inputGrad = input.grad!.MoveToOuterDisposeScope();
                }
                finally
                {
                    if (ReplayRng)
                    {
                        TorchRng.Restore(resume);
                    }
                }
            }
            // One gradient per forward argument: none for the block itself and none for the constants.
            var grads = new List<Tensor> { null!, inputGrad };
            grads.AddRange(Enumerable.Repeat<Tensor>(null!, saved.Count - 1));
            return grads;
        }
    }
}
