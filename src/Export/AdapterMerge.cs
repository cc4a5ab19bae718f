using OnnxLora.Core.Safetensors;
using OnnxLora.Merge;
using OnnxLora.Models;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace OnnxLora.Export;

/// <summary>
/// Merges saved PEFT adapters into the parameters of a plain (non-injected) TorchSharp model by name,
/// with a <see cref="MergePlan"/> (the same plan, combinations and formulas as a checkpoint merge):
/// the in-memory target of the merge engine, used when exporting several adapters merged.
/// </summary>
public static class AdapterMerge
{
    /// <summary>
    /// Applies the plan to the model's parameters; parameter names play the role of checkpoint tensor
    /// names (same prefix rules as a checkpoint merge). Every tensor is computed before any is written,
    /// so a failure leaves the model unchanged.
    /// </summary>
    /// <returns>The plan that was applied.</returns>
    public static MergePlan MergeAdapters(nn.Module model, IReadOnlyList<WeightedAdapter> adapters, MergeOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        var parameters = model.named_parameters().ToDictionary(p => p.name, p => p.parameter, StringComparer.Ordinal);
        var specs = parameters.ToDictionary(p => p.Key, p => new TensorSpec(p.Key, p.Value.dtype.ToDType(p.Key), p.Value.shape), StringComparer.Ordinal);
        var plan = MergePlan.Create(adapters, specs, model.GetName(), options);
        var results = new List<(Parameter Parameter, float[] Values)>();
        foreach (string name in plan.TargetTensors)
        {
            var p = parameters[name];
            var values = Singles(p);
            plan.ApplyTo(name, values);
            results.Add((p, values));
        }
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        foreach (var (p, values) in results)
        {
            p.copy_(tensor(values, p.shape, ScalarType.Float32).to(p.dtype).to(p.device));
        }
        return plan;
    }

    private static float[] Singles(Tensor t)
    {
        using var scope = NewDisposeScope();
        return t.detach().to(ScalarType.Float32).cpu().contiguous().data<float>().ToArray();
    }
}
