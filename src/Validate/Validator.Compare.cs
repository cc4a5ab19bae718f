using OnnxLora.Core;
using OnnxLora.Validate.Internals;

namespace OnnxLora.Validate;

public static partial class Validator
{
    private const string EagerName = "eager reference";

    private static ComparisonReport CompareModels(
        ModelSession merged, ModelSession reference,
        IReadOnlyDictionary<string, HostTensor> actual, IReadOnlyDictionary<string, HostTensor> expected,
        ValidationOptions options, bool gated)
    {
        var mergedNames = merged.Outputs.Select(o => o.Name).ToList();
        var referenceNames = reference.Outputs.Select(o => o.Name).ToList();
        if (!mergedNames.Order(StringComparer.Ordinal).SequenceEqual(referenceNames.Order(StringComparer.Ordinal)))
        {
            throw ValidateThrow.Invalid(reference.Path, "outputs", $"[{string.Join(", ", referenceNames)}]",
                $"the merged model's [{string.Join(", ", mergedNames)}]");
        }
        var results = new List<OutputComparison>();
        foreach (string name in mergedNames)
        {
            var a = actual[name];
            var r = expected[name];
            if (!a.Shape.SequenceEqual(r.Shape))
            {
                throw ValidateThrow.Invalid(reference.Path, $"output {name} shape", $"[{string.Join(", ", r.Shape)}]",
                    $"the merged model's [{string.Join(", ", a.Shape)}]");
            }
            results.Add(ComparisonMath.Compare(name, a.Shape, a.ElementType, r.ElementType, a.Data, r.Data,
                options.Atol, options.Rtol, name == options.LogitsOutput));
        }
        return new ComparisonReport(ModelRole.Merged, reference.Role, gated, results);
    }

    private static ComparisonReport CompareEager(
        IReadOnlyDictionary<string, HostTensor> actual, IReadOnlyDictionary<string, float[]>? eager, ValidationOptions options)
    {
        if (eager is null)
        {
            throw ValidateThrow.Invalid(EagerName, "outputs", "null", "a dictionary of output name to values");
        }
        var results = new List<OutputComparison>();
        foreach (var (name, values) in eager.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            if (!actual.TryGetValue(name, out var a))
            {
                throw ValidateThrow.Invalid(EagerName, $"output {name}", "a name the merged model does not have",
                    $"one of {string.Join(", ", actual.Keys)}");
            }
            if (values is null || values.LongLength != a.Data.LongLength)
            {
                throw ValidateThrow.Invalid(EagerName, $"output {name}", $"{values?.LongLength ?? 0} values",
                    $"{a.Data.LongLength} (the merged model's shape [{string.Join(", ", a.Shape)}])");
            }
            results.Add(ComparisonMath.Compare(name, a.Shape, a.ElementType, DType.F32, a.Data, values,
                options.Atol, options.Rtol, name == options.LogitsOutput));
        }
        return new ComparisonReport(ModelRole.Merged, ModelRole.Eager, true, results);
    }
}
