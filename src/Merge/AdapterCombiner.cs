using System.Text.RegularExpressions;
using OnnxLora.Core;
using OnnxLora.Core.Peft;
using OnnxLora.Core.Safetensors;
using OnnxLora.Merge.Internals;

namespace OnnxLora.Merge;

/// <summary>What <see cref="AdapterCombiner.Combine"/> wrote.</summary>
/// <param name="Config">The new adapter's config.</param>
/// <param name="Applied">The combination carried out (PEFT's single-adapter fallback turns any name into linear).</param>
/// <param name="Warnings">The adapters' load warnings and the combination's (fallback, density 1).</param>
public sealed record CombineResult(PeftAdapterConfig Config, Combination Applied, IReadOnlyList<string> Warnings);

/// <summary>
/// Combines several adapters into a NEW PEFT LoRA adapter, as PEFT's <c>add_weighted_adapter</c>
/// (peft/tuners/lora/model.py) does, written to disk, without touching any base model.
/// </summary>
/// <remarks>
/// <list type="bullet">
/// <item>PEFT's names with PEFT's semantics (<see cref="Combination"/>): linear / ties / dare_* /
/// magnitude_prune on the A and B factors (equal ranks), cat exact, svd and *_svd on ΔWᵢ truncated to
/// svd_rank. One adapter: any name becomes linear (exact for one adapter), as in PEFT.</item>
/// <item><see cref="Combination.DeltaSum"/> is written as cat, the exact low-rank form of Σ wᵢ·ΔWᵢ.</item>
/// <item>Every module of the result has scaling 1 (lora_alpha = r; per-module rank in rank_pattern /
/// alpha_pattern with escaped full module paths, where PEFT zero-pads to one rank; ΔW is the same).
/// LoHa/LoKr inputs: svd / *_svd only (PEFT has no add_weighted_adapter for them).</item>
/// <item>Refused: DoRA (PEFT would not carry the magnitude vector), lora_bias (PEFT drops the bias),
/// saved full tensors (modules_to_save, biases): their effect is not expressible as a new LoRA.</item>
/// </list>
/// </remarks>
public static class AdapterCombiner
{
    /// <summary>Writes the combined adapter to <paramref name="outputDirectory"/> (atomically).</summary>
    /// <param name="adapters">Adapters with weights.</param>
    /// <param name="outputDirectory">The new adapter folder.</param>
    /// <param name="options">Combination, density, majority sign method, seed, SVD rank, overwrite; OutputDType is the tensors' dtype (null: the first adapter's).</param>
    public static CombineResult Combine(IReadOnlyList<WeightedAdapter> adapters, string outputDirectory, MergeOptions? options = null)
    {
        options ??= MergeOptions.Default;
        options.Validate();
        if (adapters.Count == 0)
        {
            throw MergeThrow.Option(nameof(adapters), "expected at least one adapter");
        }
        var choice = CombinationRules.Resolve(adapters, options, newAdapter: true);
        var modules = GroupModules(adapters);
        var dtype = OutputType(adapters[0].Adapter, options.OutputDType);
        var tensors = new List<(TensorSpec, ReadOnlyMemory<byte>)>();
        var ranks = new List<(string Path, int Rank)>();
        foreach (var (path, parts) in modules)
        {
            var first = parts[0].Module;
            var kind = first.Kind == AdapterModuleKind.LoraEmbedding ? AdapterModuleKind.LoraEmbedding : AdapterModuleKind.Lora;
            var moduleParts = parts.Select(p => new ModulePart(p.Index, adapters[p.Index].Adapter, p.Module, adapters[p.Index].Weight)).ToList();
            var (a, b, rank) = FactorCombiner.Combine(path, moduleParts, choice.Applied, options, choice.NewRank);
            tensors.Add(PeftAdapter.EncodeTensor(PeftAdapter.KeyFor(path, kind, AdapterTensorRole.LoraA), [rank, first.InFeatures], a, dtype));
            tensors.Add(PeftAdapter.EncodeTensor(PeftAdapter.KeyFor(path, kind, AdapterTensorRole.LoraB), [first.OutFeatures, rank], b, dtype));
            ranks.Add((path, rank));
        }
        var config = BuildConfig(adapters, ranks);
        PeftAdapter.Save(outputDirectory, config, tensors, options.Overwrite);
        return new CombineResult(config, choice.Applied, adapters.SelectMany(a => a.Adapter.Warnings).Concat(choice.Warnings).ToList());
    }

    private static List<(string Path, List<(int Index, AdapterModule Module)> Parts)> GroupModules(IReadOnlyList<WeightedAdapter> adapters)
    {
        var groups = new List<(string, List<(int, AdapterModule)>)>();
        var byPath = new Dictionary<string, List<(int, AdapterModule)>>(StringComparer.Ordinal);
        for (int i = 0; i < adapters.Count; i++)
        {
            foreach (var m in adapters[i].Adapter.Modules)
            {
                if (!byPath.TryGetValue(m.ModulePath, out var list))
                {
                    list = [];
                    byPath[m.ModulePath] = list;
                    groups.Add((m.ModulePath, list));
                }
                var (fi, f) = list.Count > 0 ? list[0] : (i, m);
                if (m.InFeatures != f.InFeatures || m.OutFeatures != f.OutFeatures || m.WeightIsTransposed != f.WeightIsTransposed
                    || (m.Kind == AdapterModuleKind.LoraEmbedding) != (f.Kind == AdapterModuleKind.LoraEmbedding))
                {
                    throw MergeThrow.Invalid(adapters[i].Adapter.Directory, $"module '{m.ModulePath}'", $"{m.Kind} [{m.OutFeatures}, {m.InFeatures}]{(m.WeightIsTransposed ? " transposed" : "")}",
                        $"{f.Kind} [{f.OutFeatures}, {f.InFeatures}]{(f.WeightIsTransposed ? " transposed" : "")} as in {adapters[fi].Adapter.Directory} (fan_in_fan_out follows the layer type in PEFT: merge into the model, which decides it, or make the configs agree)");
                }
                list.Add((i, m));
            }
        }
        return groups;
    }

    private static DType OutputType(PeftAdapter first, DType? output) =>
        output ?? (first.Modules.Count > 0 ? first.Modules[0].Tensors.Values.First().DType : DType.F32);

    private static PeftAdapterConfig BuildConfig(IReadOnlyList<WeightedAdapter> adapters, List<(string Path, int Rank)> ranks)
    {
        var firstConfig = adapters[0].Adapter.Config;
        int r = ranks.Count == 0 ? 1 : ranks.GroupBy(x => x.Rank).OrderByDescending(g => g.Count()).ThenByDescending(g => g.Key).First().Key;
        var rankPattern = new OrderedDictionary<string, int>(StringComparer.Ordinal);
        var alphaPattern = new OrderedDictionary<string, double>(StringComparer.Ordinal);
        foreach (var (path, rank) in ranks.Where(x => x.Rank != r))
        {
            string key = Regex.Escape(path);
            rankPattern[key] = rank;
            alphaPattern[key] = rank;
        }
        return new PeftAdapterConfig
        {
            PeftType = PeftType.Lora,
            TaskType = firstConfig.TaskType,
            BaseModelNameOrPath = firstConfig.BaseModelNameOrPath,
            R = r,
            Alpha = r,
            TargetModules = TargetModules.FromList(ranks.Select(x => x.Path)),
            FanInFanOut = firstConfig.PeftType == PeftType.Lora && firstConfig.FanInFanOut,
            RankPattern = rankPattern,
            AlphaPattern = alphaPattern,
            Extras = firstConfig.PeftType == PeftType.Lora ? (System.Text.Json.Nodes.JsonObject)firstConfig.Extras.DeepClone() : [],
        };
    }
}
