using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text.RegularExpressions;
using OnnxLora.Training.Internals;
using OnnxLora.Training.Models.Llama;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace OnnxLora.Training.Lora;

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
/// <param name="Options">The options used.</param>
/// <param name="TrainableParameterCount">Elements of all parameters that require grad afterwards.</param>
/// <param name="TotalParameterCount">Elements of all parameters.</param>
public sealed record LoraInjectionReport(
    IReadOnlyList<LoraWrappedModule> Wrapped,
    IReadOnlyList<string> ModulesToSave,
    LoraOptions Options,
    long TrainableParameterCount,
    long TotalParameterCount);

/// <summary>
/// Injects LoRA adapters into a model with PEFT's module selection, freezes everything else, and
/// reports what it did. Works on the models of <c>OnnxLora.Training.Models</c> (any module tree whose
/// Linear/Embedding parents support replacement).
/// </summary>
public static class LoraInjection
{
    private static readonly ConditionalWeakTable<nn.Module, LoraInjectionReport> Injected = new();

    /// <summary>
    /// Wraps every targeted Linear in a <see cref="LoraLinear"/> and every targeted Embedding in a
    /// <see cref="LoraEmbedding"/>, in place. Afterwards only adapter parameters and those of
    /// <see cref="LoraOptions.ModulesToSave"/> require grad.
    /// </summary>
    /// <exception cref="Core.OnnxLoraException">Bad input: bad options; a target (or modules_to_save entry) that matches nothing (named in the message); a target that is not a Linear or Embedding; DoRA on an embedding.</exception>
    /// <exception cref="InvalidOperationException">The model already has adapters.</exception>
    public static LoraInjectionReport Apply(nn.Module model, LoraOptions options)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        Validate(options);
        var modules = model.named_modules().ToList();
        if (modules.Any(m => m.module is LoraLinear or LoraEmbedding))
        {
            throw new InvalidOperationException("the model already has LoRA adapters; inject into a fresh model.");
        }
        var byPath = modules.ToDictionary(m => m.name, m => m.module, StringComparer.Ordinal);
        var targets = SelectTargets(modules, options.TargetModules, OutputHeadPath(model));
        var saved = SelectModulesToSave(modules, options.ModulesToSave);
        foreach (string path in saved)
        {
            if (targets.Any(t => t == path || t.StartsWith(path + ".", StringComparison.Ordinal) || path.StartsWith(t + ".", StringComparison.Ordinal)))
            {
                throw ModelThrow.Argument(nameof(options), $"modules_to_save entry '{path}' overlaps a LoRA target; a module is either adapted or saved whole");
            }
        }

        using var generator = new Generator(unchecked((ulong)options.Seed));
        var wrapped = new List<LoraWrappedModule>();
        foreach (string path in targets)
        {
            var target = byPath[path];
            int rank = PatternValue(options.RankPattern, path) ?? options.Rank;
            double alpha = PatternValue(options.AlphaPattern, path) ?? options.Alpha;
            nn.Module<Tensor, Tensor> wrapper;
            switch (target)
            {
                case Linear linear:
                    var lora = new LoraLinear(linear, rank, alpha, options.Dropout, options.UseRsLora, options.UseDora, options.InitGaussian, generator);
                    wrapped.Add(new LoraWrappedModule(path, "Linear", rank, alpha, lora.Scaling, lora.InFeatures, lora.OutFeatures));
                    wrapper = lora;
                    break;
                case Embedding embedding:
                    if (options.UseDora)
                    {
                        throw ModelThrow.Argument(nameof(options), $"target '{path}' is an Embedding; DoRA is supported on Linear targets only");
                    }
                    var loraEmbedding = new LoraEmbedding(embedding, rank, alpha, options.UseRsLora, generator);
                    wrapped.Add(new LoraWrappedModule(path, "Embedding", rank, alpha, loraEmbedding.Scaling, loraEmbedding.NumEmbeddings, loraEmbedding.EmbeddingDim));
                    wrapper = loraEmbedding;
                    break;
                default:
                    throw ModelThrow.Argument(nameof(options), $"target '{path}' is a {target.GetType().Name}; LoRA applies to Linear and Embedding modules only");
            }
            Replace(model, byPath, path, wrapper);
        }

        Freeze(model, saved);
        var parameters = model.named_parameters().ToList();
        var report = new LoraInjectionReport(wrapped, saved, options,
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
        model.named_modules().Where(m => m.module is LoraLinear or LoraEmbedding).ToList();

    private static void Validate(LoraOptions options)
    {
        LoraChecks.RankAlphaDropout(options.Rank, options.Alpha, options.Dropout);
        foreach (var (key, rank) in options.RankPattern)
        {
            if (rank <= 0)
            {
                throw ModelThrow.Argument(nameof(options), $"rank_pattern['{key}']", rank.ToString(CultureInfo.InvariantCulture), "a positive integer");
            }
            _ = PatternRegex(key, "rank_pattern");
        }
        foreach (var (key, alpha) in options.AlphaPattern)
        {
            if (!double.IsFinite(alpha))
            {
                throw ModelThrow.Argument(nameof(options), $"alpha_pattern['{key}']", alpha.ToString("R", CultureInfo.InvariantCulture), "a finite number");
            }
            _ = PatternRegex(key, "alpha_pattern");
        }
        var targets = options.TargetModules ?? throw ModelThrow.Argument(nameof(options), "target_modules is required");
        if (targets.Kind == LoraTargetKind.Names && (targets.Names.Count == 0 || targets.Names.Any(string.IsNullOrEmpty)))
        {
            throw ModelThrow.Argument(nameof(options), "target_modules", $"[{string.Join(", ", targets.Names)}]", "at least one non-empty module name");
        }
        if (targets.Kind == LoraTargetKind.Regex)
        {
            _ = FullMatch(targets.Pattern!, "target_modules");
        }
    }

    /// <summary>Target paths in module order.</summary>
    private static List<string> SelectTargets(List<(string name, nn.Module module)> modules, LoraTargetModules targets, string? outputHead)
    {
        switch (targets.Kind)
        {
            case LoraTargetKind.Regex:
                var regex = FullMatch(targets.Pattern!, "target_modules");
                var matched = modules.Where(m => regex.IsMatch(m.name)).Select(m => m.name).ToList();
                return matched.Count > 0 ? matched
                    : throw ModelThrow.Argument("options", $"target_modules regex \"{targets.Pattern}\" matches no module path (paths look like '{SamplePath(modules)}')");
            case LoraTargetKind.AllLinear:
                var baseNames = modules.Where(m => m.module is Linear && m.name != outputHead).Select(m => LastComponent(m.name)).ToHashSet(StringComparer.Ordinal);
                if (outputHead is not null)
                {
                    baseNames.Remove(outputHead);
                }
                var linear = modules.Where(m => m.module is Linear && baseNames.Contains(LastComponent(m.name))).Select(m => m.name).ToList();
                return linear.Count > 0 ? linear : throw ModelThrow.Argument("options", "target_modules \"all-linear\" found no Linear module besides the output head");
            default:
                var unmatched = targets.Names.Where(key => !modules.Any(m => NameMatches(m.name, key))).ToList();
                if (unmatched.Count > 0)
                {
                    throw ModelThrow.Argument("options", $"target_modules {string.Join(", ", unmatched.Select(k => $"'{k}'"))} match{(unmatched.Count == 1 ? "es" : "")} no module (paths look like '{SamplePath(modules)}')");
                }
                return modules.Where(m => targets.Names.Any(key => NameMatches(m.name, key))).Select(m => m.name).ToList();
        }
    }

    private static List<string> SelectModulesToSave(List<(string name, nn.Module module)> modules, IReadOnlyList<string> keys)
    {
        var unmatched = keys.Where(key => !modules.Any(m => NameMatches(m.name, key))).ToList();
        if (unmatched.Count > 0)
        {
            throw ModelThrow.Argument("options", $"modules_to_save {string.Join(", ", unmatched.Select(k => $"'{k}'"))} match{(unmatched.Count == 1 ? "es" : "")} no module");
        }
        return modules.Where(m => keys.Any(key => NameMatches(m.name, key))).Select(m => m.name).ToList();
    }

    /// <summary>PEFT's list rule: the path equals the key, or ends with "." + key.</summary>
    internal static bool NameMatches(string path, string key) =>
        path == key || path.EndsWith("." + key, StringComparison.Ordinal);

    /// <summary>PEFT's <c>get_pattern_key</c>: the first key in order with <c>re.match(rf"(.*\.)?({key})$", path)</c>.</summary>
    internal static T? PatternValue<T>(IReadOnlyList<KeyValuePair<string, T>> pattern, string path) where T : struct
    {
        foreach (var (key, value) in pattern)
        {
            if (PatternRegex(key, "pattern").IsMatch(path))
            {
                return value;
            }
        }
        return null;
    }

    private static Regex PatternRegex(string key, string field) => Compile($@"\A(?:.*\.)?(?:{key})\z", key, field);

    private static Regex FullMatch(string pattern, string field) => Compile($@"\A(?:{pattern})\z", pattern, field);

    private static Regex Compile(string expression, string original, string field)
    {
        try
        {
            return new Regex(expression, RegexOptions.CultureInvariant, TimeSpan.FromSeconds(1));
        }
        catch (ArgumentException e)
        {
            throw ModelThrow.Argument("options", $"{field} \"{original}\" is not a valid regular expression ({e.Message})");
        }
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
