using static TorchSharp.torch;

namespace OnnxLora.Models.Internals;

/// <summary>
/// A module whose Linear and Embedding children can be swapped for wrappers (LoRA injection)
/// under the same name, so forward, <c>named_modules()</c> and <c>named_parameters()</c> all see the
/// replacement in the original order.
/// </summary>
internal interface IChildReplaceable
{
    /// <summary>Replaces the child registered as <paramref name="name"/>.</summary>
    /// <exception cref="ArgumentException">No replaceable child of that name.</exception>
    void ReplaceChild(string name, nn.Module<Tensor, Tensor> replacement);
}
