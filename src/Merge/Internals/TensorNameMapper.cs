namespace OnnxLora.Merge.Internals;

/// <summary>
/// Maps a name from an adapter ("model.layers.0.self_attn.q_proj.weight") to a tensor of the
/// target. Exact names win; otherwise one prefix difference is allowed: the target has a longer
/// name ending in "." + name (e.g. "bert." + name), or the adapter's name has one extra leading
/// component (e.g. "model." or "bert."). More than one candidate is an error listing them all.
/// </summary>
internal sealed class TensorNameMapper
{
    private readonly string _where;
    private readonly HashSet<string> _names;
    private readonly Dictionary<string, List<string>> _bySuffix = new(StringComparer.Ordinal);

    public TensorNameMapper(string where, IEnumerable<string> names)
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
            throw MergeThrow.Invalid(_where, $"{what ?? $"'{name}'"} maps to several tensors: {string.Join(", ", candidates.Select(c => $"'{c}'"))}; expected exactly one (names differ only by a prefix such as 'model.' or 'bert.').");
        }
        return null;
    }

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
        throw MergeThrow.Invalid(_where, $"{what} maps to no tensor: found no '{name}' (nor a name differing by one prefix), expected the base model to have it. Is this adapter for this model?{hint}");
    }
}
