using System.Runtime.CompilerServices;
using OnnxLora.Core.Peft;
using OnnxLora.Models.Internals;
using OnnxLora.Models.Llama;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace OnnxLora.Models.Lora;

/// <summary>One module that received an adapter.</summary>
/// <param name="Path">Module path, e.g. "model.layers.0.self_attn.q_proj".</param>
/// <param name="BaseType">"Linear" or "Embedding".</param>
/// <param name="Rank">r of this module (after rank_pattern).</param>
/// <param name="Alpha">alpha of this module (after alpha_pattern).</param>
/// <param name="Scaling">alpha/r, or alpha/√r with rsLoRA.</param>
/// <param name="InFeatures">Input features (Linear) or number of embeddings (Embedding).</param>
/// <param name="OutFeatures">Output features (Linear) or embedding size (Embedding).</param>
public sealed record LoraWrappedModule(string Path, string BaseType, int Rank, double Alpha, double Scaling, long InFeatures, long OutFeatures);

/// <summary>What <see cref="LoraInjection.Apply"/> did.</summary>
/// <param name="Wrapped">The modules given adapters, in module order.</param>
/// <param name="ModulesToSave">Paths of modules made fully trainable (saved whole with the adapter).</param>
/// <param name="Config">The adapter config that was applied.</param>
/// <param name="TrainableParameterCount">Elements of all parameters that require grad afterwards.</param>
/// <param name="TotalParameterCount">Elements of all parameters.</param>
public sealed record LoraInjectionReport(
    IReadOnlyList<LoraWrappedModule> Wrapped,
    IReadOnlyList<string> ModulesToSave,
    PeftAdapterConfig Config,
    long TrainableParameterCount,
    long TotalParameterCount);

/// <summary>
/// Injects LoRA adapters into a model as PEFT does for a <see cref="PeftAdapterConfig"/> (the one adapter
/// config: target_modules, r / lora_alpha with rank_pattern / alpha_pattern, use_rslora, use_dora,
/// lora_dropout, init_lora_weights, modules_to_save), freezes everything else, and reports what it did.
/// Module selection and per-module rank/alpha are the config's own (<see cref="TargetModules.Matches"/>,
/// <see cref="PeftAdapterConfig.RankFor"/>, <see cref="PeftAdapterConfig.AlphaFor"/>). Works on the
/// models of <c>OnnxLora.Models</c> (any module tree whose Linear/Embedding parents support replacement).
/// </summary>
public static class LoraInjection
{
    private static readonly ConditionalWeakTable<nn.Module, LoraInjectionReport> Injected = new();

    /// <summary>
    /// Wraps every targeted Linear in a <see cref="LoraLinear"/> and every targeted Embedding in a
    /// <see cref="LoraEmbedding"/>, in place. Afterwards only adapter parameters and those of
    /// modules_to_save require grad. The adapters are initialised from a generator seeded with
    /// <paramref name="seed"/>, in module order.
    /// </summary>
    /// <exception cref="Core.OnnxLoraException">Bad input: not a LoRA config (LoHa/LoKr are merged, not attached); a bad value; a target (or modules_to_save entry) that matches nothing (named in the message); a target that is not a Linear or Embedding; DoRA on an embedding.</exception>
    /// <exception cref="InvalidOperationException">The model already has adapters.</exception>
    public static LoraInjectionReport Apply(nn.Module model, PeftAdapterConfig config, long seed = 0)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(config);
        if (config.PeftType != PeftType.Lora)
        {
            throw ModelThrow.Argument(nameof(config), $"peft_type {config.PeftType.ToJsonName()} adapters can be merged (merge-export merge) but not attached to a TorchSharp model; only LORA adapters can");
        }
        var targetModules = config.TargetModules ?? throw ModelThrow.Argument(nameof(config), "target_modules", "nothing", "a list of names, a regex or \"all-linear\"");
        var modules = model.named_modules().ToList();
        if (modules.Any(m => m.module is LoraLayer))
        {
            throw new InvalidOperationException("the model already has LoRA adapters; inject into a fresh model.");
        }
        var byPath = modules.ToDictionary(m => m.name, m => m.module, StringComparer.Ordinal);
        var targets = SelectTargets(modules, targetModules, OutputHeadPath(model));
        var saved = SelectModulesToSave(modules, config.ModulesToSave ?? []);
        foreach (string path in saved)
        {
            if (targets.Any(t => t == path || t.StartsWith(path + ".", StringComparison.Ordinal) || path.StartsWith(t + ".", StringComparison.Ordinal)))
            {
                throw ModelThrow.Argument(nameof(config), $"modules_to_save entry '{path}' overlaps a LoRA target; a module is either adapted or saved whole");
            }
        }

        bool gaussian = string.Equals(config.InitWeights, "gaussian", StringComparison.OrdinalIgnoreCase);
        using var generator = new Generator(unchecked((ulong)seed));
        var wrapped = new List<LoraWrappedModule>();
        foreach (string path in targets)
        {
            var target = byPath[path];
            int rank = config.RankFor(path);
            double alpha = config.AlphaFor(path);
            nn.Module<Tensor, Tensor> wrapper;
            switch (target)
            {
                case Linear linear:
                    var lora = new LoraLinear(linear, rank, alpha, config.LoraDropout, config.UseRsLora, config.UseDora, gaussian, generator);
                    wrapped.Add(new LoraWrappedModule(path, "Linear", rank, alpha, lora.Scaling, lora.InFeatures, lora.OutFeatures));
                    wrapper = lora;
                    break;
                case Embedding embedding:
                    if (config.UseDora)
                    {
                        throw ModelThrow.Argument(nameof(config), $"target '{path}' is an Embedding; DoRA is supported on Linear targets only");
                    }
                    var loraEmbedding = new LoraEmbedding(embedding, rank, alpha, config.UseRsLora, generator);
                    wrapped.Add(new LoraWrappedModule(path, "Embedding", rank, alpha, loraEmbedding.Scaling, loraEmbedding.NumEmbeddings, loraEmbedding.EmbeddingDim));
                    wrapper = loraEmbedding;
                    break;
                default:
                    throw ModelThrow.Argument(nameof(config), $"target '{path}' is a {target.GetType().Name}; LoRA applies to Linear and Embedding modules only");
            }
            Replace(model, byPath, path, wrapper);
        }

        Freeze(model, saved);
        var parameters = model.named_parameters().ToList();
        var report = new LoraInjectionReport(wrapped, saved, config,
            parameters.Where(p => p.parameter.requires_grad).Sum(p => p.parameter.numel()),
            parameters.Sum(p => p.parameter.numel()));
        Injected.AddOrUpdate(model, report);
        return report;
    }

    /// <summary>The report of the injection into <paramref name="model"/>, or null if none was made.</summary>
    public static LoraInjectionReport? ReportOf(nn.Module model) => Injected.TryGetValue(model, out var report) ? report : null;

    /// <summary>The parameters that require grad (adapters and modules_to_save after injection), with their names.</summary>
    public static IReadOnlyList<(string Name, Parameter Parameter)> TrainableParameters(nn.Module model) =>
        model.named_parameters().Where(p => p.parameter.requires_grad).ToList();

    /// <summary>The LoRA layers of a model with their module paths, in module order.</summary>
    public static IReadOnlyList<(string Path, nn.Module Layer)> LoraLayers(nn.Module model) =>
        model.named_modules().Where(m => m.module is LoraLayer).ToList();

    /// <summary>
    /// The target_modules saved after this injection: the config's regex as given, its list sorted (PEFT
    /// holds it as a set), and for "all-linear" the sorted last name segments of the wrapped modules (PEFT
    /// resolves it the same way).
    /// </summary>
    public static TargetModules ResolvedTargets(LoraInjectionReport report)
    {
        ArgumentNullException.ThrowIfNull(report);
        var targets = report.Config.TargetModules!;
        return targets.Kind switch
        {
            TargetModulesKind.Regex => targets,
            TargetModulesKind.List => TargetModules.FromList(targets.Names.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal)),
            _ => TargetModules.FromList(report.Wrapped.Select(w => LastComponent(w.Path)).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal)),
        };
    }

    /// <summary>Target paths in module order.</summary>
    private static List<string> SelectTargets(List<(string name, nn.Module module)> modules, TargetModules targets, string? outputHead)
    {
        switch (targets.Kind)
        {
            case TargetModulesKind.Regex:
                var matched = modules.Where(m => targets.Matches(m.name)).Select(m => m.name).ToList();
                return matched.Count > 0 ? matched
                    : throw ModelThrow.Argument("config", $"target_modules regex \"{targets.Pattern}\" matches no module path (paths look like '{SamplePath(modules)}')");
            case TargetModulesKind.AllLinear:
                var baseNames = modules.Where(m => m.module is Linear && m.name != outputHead).Select(m => LastComponent(m.name)).ToHashSet(StringComparer.Ordinal);
                if (outputHead is not null)
                {
                    baseNames.Remove(outputHead);
                }
                var linear = modules.Where(m => m.module is Linear && baseNames.Contains(LastComponent(m.name))).Select(m => m.name).ToList();
                return linear.Count > 0 ? linear : throw ModelThrow.Argument("config", "target_modules \"all-linear\" found no Linear module besides the output head");
            default:
                if (targets.Names.Count == 0 || targets.Names.Any(string.IsNullOrEmpty))
                {
                    throw ModelThrow.Argument("config", "target_modules", targets.ToString(), "at least one non-empty module name");
                }
                var unmatched = targets.Names.Where(key => !modules.Any(m => TargetModules.FromList(key).Matches(m.name))).ToList();
                if (unmatched.Count > 0)
                {
                    throw ModelThrow.Argument("config", $"target_modules {string.Join(", ", unmatched.Select(k => $"'{k}'"))} match{(unmatched.Count == 1 ? "es" : "")} no module (paths look like '{SamplePath(modules)}')");
                }
                return modules.Where(m => targets.Matches(m.name)).Select(m => m.name).ToList();
        }
    }

    private static List<string> SelectModulesToSave(List<(string name, nn.Module module)> modules, IReadOnlyList<string> keys)
    {
        var unmatched = keys.Where(key => !modules.Any(m => TargetModules.FromList(key).Matches(m.name))).ToList();
        if (unmatched.Count > 0)
        {
            throw ModelThrow.Argument("config", $"modules_to_save {string.Join(", ", unmatched.Select(k => $"'{k}'"))} match{(unmatched.Count == 1 ? "es" : "")} no module");
        }
        var all = TargetModules.FromList(keys);
        return keys.Count == 0 ? [] : modules.Where(m => all.Matches(m.name)).Select(m => m.name).ToList();
    }

    private static string LastComponent(string path) => path[(path.LastIndexOf('.') + 1)..];

    private static string SamplePath(List<(string name, nn.Module module)> modules) =>
        modules.FirstOrDefault(m => m.module is Linear).name ?? modules.FirstOrDefault().name ?? "";

    /// <summary>The output head's path, excluded by "all-linear".</summary>
    private static string? OutputHeadPath(nn.Module model) => model is LlamaForCausalLM ? "lm_head" : null;

    private static void Replace(nn.Module model, Dictionary<string, nn.Module> byPath, string path, nn.Module<Tensor, Tensor> wrapper)
    {
        int dot = path.LastIndexOf('.');
        var parent = dot < 0 ? model : byPath[path[..dot]];
        if (parent is not IChildReplaceable host)
        {
            throw new InvalidOperationException($"cannot inject LoRA at '{path}': its parent {parent.GetType().Name} does not support replacing children.");
        }
        host.ReplaceChild(LastComponent(path), wrapper);
    }

    private static void Freeze(nn.Module model, IReadOnlyList<string> modulesToSave)
    {
        foreach (var (_, p) in model.named_parameters())
        {
            p.requires_grad = false;
        }
        foreach (var (_, layer) in LoraLayers(model))
        {
            foreach (var (name, p) in layer.named_parameters())
            {
                p.requires_grad = !name.StartsWith("base_layer.", StringComparison.Ordinal);
            }
        }
        var byPath = model.named_modules().ToDictionary(m => m.name, m => m.module, StringComparer.Ordinal);
        foreach (string path in modulesToSave)
        {
            foreach (var p in byPath[path].parameters())
            {
                p.requires_grad = true;
            }
        }
    }
}
