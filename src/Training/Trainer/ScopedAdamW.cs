using TorchSharp.Modules;
using static TorchSharp.torch;

namespace OnnxLora.Training;

/// <summary>
/// AdamW (decoupled weight decay, PyTorch's single-tensor update) whose step frees each parameter's temporaries as soon as
/// that parameter is updated. TorchSharp 0.107's <see cref="AdamW"/> runs the whole step inside one dispose scope, so the
/// parameter-sized temporaries of every parameter's denominator (√v and √v / √(1 − β₂ᵗ)) stay alive until the last parameter
/// is updated: for full fine-tuning two more copies of the weights at the end of every step, on top of weights, gradients and
/// both moments (docs/benchmarks-training.md §13). Here each parameter's update has its own scope and the denominator is
/// one buffer divided in place, so at most one parameter-sized temporary is alive. The operations and their order are those of
/// TorchSharp's step, so the parameters and moments are bit-identical to it (tests); the state type is TorchSharp's, so
/// optimizer checkpoints read and write the same.
/// </summary>
/// <remarks>Hand-written because TorchSharp has no foreach/fused AdamW and no way to scope its step per parameter.</remarks>
public sealed class ScopedAdamW : AdamW
{
    /// <summary>The arguments of <see cref="AdamW"/>'s constructor; no AMSGrad and no maximize (not implemented here).</summary>
    public ScopedAdamW(IEnumerable<Parameter> parameters, double lr, double beta1, double beta2, double eps, double weightDecay)
        : base(parameters, lr, beta1, beta2, eps, weightDecay, amsgrad: false, maximize: false)
    {
    }

    public override Tensor step(Func<Tensor>? closure = null) => _step<ParamGroup>(group =>
    {
        var options = (Options)group.Options;
        if (options.amsgrad == true || options.maximize == true)
        {
            throw new InvalidOperationException($"{nameof(ScopedAdamW)} implements neither AMSGrad nor maximize; a parameter group asks for one (this is a bug).");
        }
        double lr = options.LearningRate!.Value, beta1 = options.beta1!.Value, beta2 = options.beta2!.Value;
        double eps = options.eps!.Value, weightDecay = options.weight_decay!.Value;
        foreach (var parameter in group.Parameters)
        {
            using var scope = NewDisposeScope();
            var grad = parameter.grad;
            if (grad is null)
            {
                continue;
            }
            var state = (State)_state[parameter.Handle];
            state.step++;
            double correction1 = 1 - Math.Pow(beta1, state.step);
            double correction2 = 1 - Math.Pow(beta2, state.step);
            parameter.mul_(1 - (lr * weightDecay));
            state.exp_avg.mul_(beta1).add_(grad, alpha: 1 - beta1);
            state.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value: 1 - beta2);
            var denominator = state.exp_avg_sq.sqrt();
            denominator.div_(Math.Sqrt(correction2)).add_(eps);
            parameter.addcdiv_(state.exp_avg, denominator, value: -lr / correction1);
        }
    }, closure);
}
