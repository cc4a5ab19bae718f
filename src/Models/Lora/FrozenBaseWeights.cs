using OnnxLora.Core;
using OnnxLora.Models.Internals;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace OnnxLora.Models.Lora;

/// <summary>
/// Stores a LoRA model's frozen base weights in a narrower float type (QLoRA-style training with a bf16
/// instead of a 4-bit base): every Linear and Embedding whose weight is frozen gets its weight (and bias)
/// converted, and computes as bitsandbytes' <c>Linear4bit</c> does with its compute dtype — the input cast to
/// the weight's type, the product in that type, the output cast back to the model's type. Everything else
/// stays as it was: LoRA factors, modules_to_save, norms (kept in fp32 as PEFT's
/// <c>prepare_model_for_kbit_training</c> keeps them) and so the hidden states between layers. The LoRA
/// branch then sees fp32 inputs, which is what PEFT's LoRA layer arranges by casting the input to lora_A's
/// dtype before the adapter and the sum back to the base result's dtype.
/// </summary>
public static class FrozenBaseWeights
{
    /// <summary>
    /// Converts the frozen Linear and Embedding weights of <paramref name="model"/> to <paramref name="dtype"/>
    /// (BF16 or F16) in place and returns how many parameters were converted. A weight shared by two modules
    /// (tied embeddings) stays shared. Call after <see cref="LoraInjection.Apply"/> (which freezes the base).
    /// </summary>
    /// <exception cref="OnnxLoraException">Bad input: <paramref name="dtype"/> is not a 16-bit float type; the model has DoRA layers (their
    /// forward recomputes the base product from the weight directly).</exception>
    public static int Convert(nn.Module model, DType dtype)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (dtype is not (DType.BF16 or DType.F16))
        {
            throw ModelThrow.Argument(nameof(dtype), "base weight dtype", dtype.ToString(), "BF16 or F16");
        }
        if (model.modules().OfType<LoraLinear>().Any(l => l.UseDora))
        {
            throw ModelThrow.Argument(nameof(model), "a narrower base weight dtype cannot be combined with DoRA (its forward recomputes the base product from the weight); train DoRA with an fp32 base");
        }
        var target = dtype.ToScalarType();
        // Keyed by object, not by native handle: a module's weight setter may dispose the weight it replaces, and a
        // freed handle can come back for another tensor. A weight two modules hold as one Parameter gets one copy;
        // two Parameters over one storage (a tie TorchSharp does not show as one object) get a copy each, equal and frozen.
        // The value keeps the dtype the module computed in before. Each replaced weight is freed at once (disposing
        // twice is harmless), so the conversion needs little more than the narrow copies.
        var converted = new Dictionary<Parameter, (Parameter Narrow, ScalarType Compute)>(ReferenceEqualityComparer.Instance);
        (Parameter Narrow, ScalarType Compute)? Narrow(Parameter p)
        {
            if (converted.TryGetValue(p, out var done))
            {
                return done;
            }
            if (p.requires_grad || p.dtype == target)
            {
                return null;
            }
            using var noGrad = no_grad();
            using var source = p.detach();
            var narrow = (new Parameter(source.to(target), requires_grad: false), p.dtype);
            converted[p] = narrow;
            return narrow;
        }
        foreach (var module in model.modules().ToList())
        {
            switch (module)
            {
                case Linear linear when linear.weight is { } w && Narrow(w) is var (narrowWeight, compute):
                    {
                        linear.weight = narrowWeight;
                        w.Dispose();
                        if (linear.bias is { } bias && Narrow(bias) is var (narrowBias, _))
                        {
                            linear.bias = narrowBias;
                            bias.Dispose();
                        }
                        linear.register_forward_pre_hook((_, x) => x.to(target));
                        linear.register_forward_hook((_, _, y) => y.to(compute));
                        break;
                    }
                case Embedding embedding when embedding.weight is { } w && Narrow(w) is var (narrowWeight, compute):
                    {
                        embedding.weight = narrowWeight;
                        w.Dispose();
                        embedding.register_forward_hook((_, _, y) => y.to(compute));
                        break;
                    }
            }
        }
        return converted.Count;
    }
}
