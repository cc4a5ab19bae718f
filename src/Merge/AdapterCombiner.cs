using System.Text.RegularExpressions;
using OnnxLora.Core;
using OnnxLora.Core.Peft;
using OnnxLora.Core.Safetensors;
using OnnxLora.Merge.Internals;

namespace OnnxLora.Merge;

/// <summary>
/// Combines several adapters into a NEW PEFT LoRA adapter (PEFT's add_weighted_adapter, written to
/// disk), without touching any base model.
/// </summary>
/// <remarks>
/// <list type="bullet">
/// <item><see cref="Combination.Cat"/> and <see cref="Combination.Linear"/>: exact. A' stacks wᵢ·sᵢ·Aᵢ,
/// B' stacks Bᵢ, so B'·A' = Σ wᵢ·ΔWᵢ with rank Σ rᵢ (PEFT's own "linear" mixes factors and is not
/// exact; here it is written as cat). LoRA/embedding-LoRA inputs only.</item>
/// <item><see cref="Combination.Svd"/>: Σ wᵢ·ΔWᵢ truncated to <see cref="MergeOptions.SvdRank"/> (default:
/// the largest input rank) by SVD; B' = U·S, A' = Vᵀ. Any non-DoRA input kind (LoHa/LoKr too).</item>
/// <item><see cref="Combination.Ties"/>, dare_*, magnitude_prune: applied to the full ΔWᵢ, then SVD as
/// above (PEFT's *_svd variants). Each ΔWᵢ already includes its scaling sᵢ (PEFT's svd path
/// multiplies by sᵢ a second time; this does not).</item>
/// </list>
/// Every module of the result has scaling 1 (lora_alpha = r, per-module rank in rank_pattern /
/// alpha_pattern with escaped full module paths). DoRA adapters and adapters with saved full tensors
/// (modules_to_save, biases) are refused: their effect is not expressible as a new LoRA.
/// </remarks>
public static class AdapterCombiner
{
    /// <summary>Writes the combined adapter to <paramref name="outputDirectory"/> (atomically) and returns its config.</summary>
    /// <param name="adapters">Adapters with weights.</param>
    /// <param name="outputDirectory">The new adapter folder.</param>
    /// <param name="options">Combination, density, seed, SVD rank, overwrite; OutputDType is the tensors' dtype (null: the first adapter's).</param>
    public static PeftAdapterConfig Combine(IReadOnlyList<WeightedAdapter> adapters, string outputDirectory, MergeOptions? options = null)
    {
        options ??= MergeOptions.Default;
        options.Validate();
        if (adapters.Count == 0)
        {
            throw MergeThrow.Option(nameof(adapters), "expected at least one adapter");
        }
        foreach (var wa in adapters)
        {
            if (wa.Adapter.ExtraTensors.Count > 0)
            {
                throw MergeThrow.Invalid(wa.Adapter.Directory, $"saved full tensors ({string.Join(", ", wa.Adapter.ExtraTensors.Take(5).Select(x => $"'{x.Key}'"))}) cannot be combined into a new LoRA adapter; merge this adapter into the base weights instead.");
            }
            if (wa.Adapter.Modules.FirstOrDefault(m => m.UseDora) is { } dora)
            {
                throw MergeThrow.Invalid(wa.Adapter.Directory, $"module '{dora.ModulePath}' is DoRA; its update depends on the base weight, so it cannot be combined into a new adapter (merge it into the weights instead).");
            }
        }
        var modules = GroupModules(adapters);
        var dtype = OutputType(adapters[0].Adapter, options.OutputDType);
        var tensors = new List<(TensorSpec, ReadOnlyMemory<byte>)>();
        var ranks = new List<(string Path, int Rank)>();
        bool exact = options.Combination is Combination.Cat or Combination.Linear;
        foreach (var (path, parts) in modules)
        {
            var first = parts[0].Module;
            var kind = first.Kind == AdapterModuleKind.LoraEmbedding ? AdapterModuleKind.LoraEmbedding : AdapterModuleKind.Lora;
            float[] a, b;
            int rank;
            if (exact)
            {
                (a, b, rank) = Concatenate(adapters, path, parts);
            }
            else
            {
                var tasks = parts.Select(p => adapters[p.Index].Adapter.ReadUpdate(p.Module).Delta()).ToList();
                var weights = parts.Select(p => adapters[p.Index].Weight).ToList();
                var method = options.Combination == Combination.Svd ? Combination.Linear : options.Combination;
                var seeds = parts.Select(p => TaskMerge.SeedFor(options.Seed, path, p.Index)).ToList();
                var combined = TaskMerge.Combine(tasks, weights, method, options.Density, options.MajoritySign, seeds);
                int wanted = options.SvdRank ?? adapters.Max(x => x.Adapter.Modules.Count == 0 ? 0 : x.Adapter.Modules.Max(m => m.Rank));
                (b, a, rank) = TruncatedSvd.Factor(combined, first.OutFeatures, first.InFeatures, wanted);
            }
            tensors.Add(PeftAdapter.EncodeTensor(PeftAdapter.KeyFor(path, kind, AdapterTensorRole.LoraA), [rank, first.InFeatures], a, dtype));
            tensors.Add(PeftAdapter.EncodeTensor(PeftAdapter.KeyFor(path, kind, AdapterTensorRole.LoraB), [first.OutFeatures, rank], b, dtype));
            ranks.Add((path, rank));
        }
        var config = BuildConfig(adapters, ranks);
        PeftAdapter.Save(outputDirectory, config, tensors, options.Overwrite);
        return config;
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
                        $"{f.Kind} [{f.OutFeatures}, {f.InFeatures}]{(f.WeightIsTransposed ? " transposed" : "")} as in {adapters[fi].Adapter.Directory}");
                }
                list.Add((i, m));
            }
        }
        return groups;
    }

    private static (float[] A, float[] B, int Rank) Concatenate(IReadOnlyList<WeightedAdapter> adapters, string path, List<(int Index, AdapterModule Module)> parts)
    {
        foreach (var (i, m) in parts)
        {
            if (m.Kind is not (AdapterModuleKind.Lora or AdapterModuleKind.LoraEmbedding))
            {
                throw MergeThrow.Invalid(adapters[i].Adapter.Directory, $"module '{path}' is {m.Kind}; cat/linear combine LoRA factors exactly and need LoRA inputs; use svd (or ties/dare/magnitude_prune) for LoHa/LoKr.");
            }
        }
        var first = parts[0].Module;
        int inF = first.InFeatures, outF = first.OutFeatures;
        int rank = parts.Sum(p => p.Module.Rank);
        if (rank > Math.Min(inF, outF))
        {
            throw MergeThrow.Invalid(adapters[parts[0].Index].Adapter.Directory, $"module '{path}'", $"a concatenated rank of {rank} for a [{outF}, {inF}] weight",
                $"at most {Math.Min(inF, outF)}; use svd with a smaller rank");
        }
        var a = new float[rank * inF];
        var b = new float[outF * rank];
        int offset = 0;
        foreach (var (i, m) in parts)
        {
            var adapter = adapters[i].Adapter;
            double f = adapters[i].Weight * m.Scaling;
            var ai = adapter.ReadSingles(m, AdapterTensorRole.LoraA);
            var bi = adapter.ReadSingles(m, AdapterTensorRole.LoraB);
            for (int k = 0; k < m.Rank; k++)
            {
                for (int c = 0; c < inF; c++)
                {
                    a[(offset + k) * inF + c] = (float)(f * ai[k * inF + c]);
                }
            }
            for (int o = 0; o < outF; o++)
            {
                for (int k = 0; k < m.Rank; k++)
                {
                    b[o * rank + offset + k] = bi[o * m.Rank + k];
                }
            }
            offset += m.Rank;
        }
        return (a, b, rank);
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
