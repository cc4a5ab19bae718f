namespace OnnxLora.Merge.Onnx.Internals;

/// <summary>
/// Looks up dotted names allowing one leading component of difference: "layers.0.q_proj.weight"
/// finds "model.layers.0.q_proj.weight" and vice versa. An exact name wins.
/// </summary>
internal sealed class PrefixNameIndex
{
    private readonly HashSet<string> _names;
    private readonly Dictionary<string, List<string>> _byTail = new(StringComparer.Ordinal);

    public PrefixNameIndex(IEnumerable<string> names)
    {
        _names = new HashSet<string>(names, StringComparer.Ordinal);
        foreach (string n in _names)
        {
            int dot = n.IndexOf('.');
            if (dot > 0 && dot < n.Length - 1)
            {
                string tail = n[(dot + 1)..];
                if (!_byTail.TryGetValue(tail, out var list))
                {
                    list = [];
                    _byTail.Add(tail, list);
                }
                list.Add(n);
            }
        }
    }

    public bool Contains(string name) => _names.Contains(name);

    /// <summary>The exact name, else every name differing from it by one leading component (sorted).</summary>
    public IReadOnlyList<string> Find(string name)
    {
        if (_names.Contains(name))
        {
            return [name];
        }
        var found = new SortedSet<string>(StringComparer.Ordinal);
        if (_byTail.TryGetValue(name, out var longer))
        {
            found.UnionWith(longer);
        }
        int dot = name.IndexOf('.');
        if (dot > 0 && _names.Contains(name[(dot + 1)..]))
        {
            found.Add(name[(dot + 1)..]);
        }
        return [.. found];
    }
}
