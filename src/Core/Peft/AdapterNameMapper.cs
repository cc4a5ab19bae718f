using OnnxLora.Core.Peft.Internals;

namespace OnnxLora.Core.Peft;

/// <summary>
/// The one place an adapter's names meet a target's: maps a name from an adapter
/// ("model.layers.0.self_attn.q_proj.weight", its key with PEFT's "base_model.model." removed) to a tensor
/// of the target (a checkpoint's tensors, an ONNX graph's initializers, a TorchSharp model's parameters).
/// Exact names win; otherwise one prefix difference is allowed: the target has a longer name ending in
/// "." + name (an adapter trained on BertModel, "encoder.…", on a BertForSequenceClassification,
/// "bert.encoder.…"), or the adapter's name has one extra leading component (PEFT's
/// "base_model.model.bert.…" of a BertFor* adapter on a BertModel). More than one candidate is an error
/// listing them all. Used by merge plans and by attaching an adapter to a TorchSharp model.
/// </summary>
public sealed class AdapterNameMapper
{
    private readonly string _where;
    private readonly HashSet<string> _names;
    private readonly Dictionary<string, List<string>> _bySuffix = new(StringComparer.Ordinal);

    /// <summary>A mapper onto <paramref name="names"/>; <paramref name="where"/> names the target in messages.</summary>
    public AdapterNameMapper(string where, IEnumerable<string> names)
    {
        _where = where;
        _names = new HashSet<string>(names, StringComparer.Ordinal);
        foreach (string n in _names)
        {
            // Index every dotted suffix so "x.y.z" is found from "y.z" and "z".
            for (int i = n.IndexOf('.'); i >= 0; i = n.IndexOf('.', i + 1))
            {
                string suffix = n[(i + 1)..];
                if (!_bySuffix.TryGetValue(suffix, out var list))
                {
                    list = [];
                    _bySuffix[suffix] = list;
                }
                list.Add(n);
            }
        }
    }

    /// <summary>The target tensor for <paramref name="name"/>, or null when none; several candidates are an error.</summary>
    public string? TryResolve(string name, string? what = null)
    {
        if (_names.Contains(name))
        {
            return name;
        }
        var candidates = new SortedSet<string>(StringComparer.Ordinal);
        if (_bySuffix.TryGetValue(name, out var longer))
        {
            candidates.UnionWith(longer);
        }
        int dot = name.IndexOf('.');
        if (dot > 0 && _names.Contains(name[(dot + 1)..]))
        {
            candidates.Add(name[(dot + 1)..]);
        }
        if (candidates.Count == 1)
        {
            return candidates.Min!;
        }
        if (candidates.Count > 1)
        {
            throw PeftThrow.Invalid(_where, $"{what ?? $"'{name}'"} maps to several tensors: {string.Join(", ", candidates.Select(c => $"'{c}'"))}; expected exactly one (names differ only by a prefix such as 'model.' or 'bert.').");
        }
        return null;
    }

    /// <summary>The target tensor for <paramref name="name"/>; none or several is bad input naming <paramref name="what"/>.</summary>
    public string Resolve(string name, string what)
    {
        if (TryResolve(name, what) is { } found)
        {
            return found;
        }
        string leaf = name[(name.LastIndexOf('.', name.Length - 1) + 1)..];
        string module = name.Contains('.') ? name[..name.LastIndexOf('.')] : name;
        string lastModule = module[(module.LastIndexOf('.') + 1)..];
        var similar = _names.Where(n => n.Contains(lastModule, StringComparison.Ordinal) && n.EndsWith("." + leaf, StringComparison.Ordinal))
            .Order(StringComparer.Ordinal).Take(5).ToList();
        string hint = similar.Count > 0 ? $" Similar names: {string.Join(", ", similar.Select(s => $"'{s}'"))}." : "";
        throw PeftThrow.Invalid(_where, $"{what} maps to no tensor: found no '{name}' (nor a name differing by one prefix), expected the base model to have it. Is this adapter for this model?{hint}");
    }

    /// <summary>
    /// The target tensor replaced by saved tensor <paramref name="extra"/> of <paramref name="adapter"/>. A
    /// modules_to_save tensor with no target is a head the target lacks (PEFT's SEQ_CLS adapters save their
    /// "classifier" whole): the error says so, naming the head and the target.
    /// </summary>
    public string ResolveExtra(PeftAdapter adapter, AdapterExtraTensor extra)
    {
        ArgumentNullException.ThrowIfNull(adapter);
        ArgumentNullException.ThrowIfNull(extra);
        string what = $"adapter {adapter.Directory}: saved tensor '{extra.Key}'";
        return extra.Kind == AdapterExtraKind.ModulesToSave
            ? TryResolve(extra.TargetName, what) ?? throw MissingHead(adapter, extra)
            : Resolve(extra.TargetName, what);
    }

    private OnnxLoraException MissingHead(PeftAdapter adapter, AdapterExtraTensor extra)
    {
        string head = adapter.Config.ModulesToSave?.FirstOrDefault(m => extra.TargetName == m || extra.TargetName.StartsWith(m + ".", StringComparison.Ordinal)
            || extra.TargetName.Contains("." + m + ".", StringComparison.Ordinal)) ?? extra.TargetName[..Math.Max(0, extra.TargetName.LastIndexOf('.'))];
        string task = adapter.Config.TaskType is { Length: > 0 } t ? $"task_type {t}, " : "";
        return PeftThrow.Invalid(_where, $"the adapter {adapter.Directory} carries a trained head '{head}' ({task}modules_to_save; saved as '{extra.Key}') that this model does not have "
            + $"(no tensor '{extra.TargetName}'). Use a checkpoint with that head, e.g. a BertForSequenceClassification checkpoint for a SEQ_CLS adapter (config.json architectures), not the bare encoder.");
    }
}
