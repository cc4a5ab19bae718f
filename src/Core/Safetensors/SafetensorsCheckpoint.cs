using System.Text.Json;
using OnnxLora.Core.Internals;

namespace OnnxLora.Core.Safetensors;

/// <summary>
/// The weights of a Hugging Face checkpoint: one <c>model.safetensors</c>, or shards listed by
/// <c>model.safetensors.index.json</c>. Tensors are looked up by name across shards.
/// </summary>
public sealed class SafetensorsCheckpoint : IDisposable
{
    /// <summary>Name of the single-file weights.</summary>
    public const string SingleFileName = "model.safetensors";

    /// <summary>Name of the shard index.</summary>
    public const string IndexFileName = "model.safetensors.index.json";

    private readonly Dictionary<string, SafetensorsFile> _owner;

    private SafetensorsCheckpoint(string directory, IReadOnlyList<SafetensorsFile> shards,
        Dictionary<string, SafetensorsFile> owner, string? indexPath, IReadOnlyDictionary<string, JsonElement> indexMetadata)
    {
        Directory = directory;
        Shards = shards;
        _owner = owner;
        IndexPath = indexPath;
        IndexMetadata = indexMetadata;
        Tensors = shards.SelectMany(s => s.Tensors).ToList();
    }

    /// <summary>The checkpoint folder.</summary>
    public string Directory { get; }

    /// <summary>The shard files in index order (one for a single-file checkpoint).</summary>
    public IReadOnlyList<SafetensorsFile> Shards { get; }

    /// <summary>The index file, or null for a single-file checkpoint.</summary>
    public string? IndexPath { get; }

    /// <summary>The index's "metadata" object (empty without an index).</summary>
    public IReadOnlyDictionary<string, JsonElement> IndexMetadata { get; }

    /// <summary>Every tensor, shard by shard.</summary>
    public IReadOnlyList<TensorInfo> Tensors { get; }

    /// <summary>True when a folder holds safetensors weights in a layout this class reads.</summary>
    public static bool IsCheckpointDirectory(string directory) =>
        File.Exists(System.IO.Path.Combine(directory, IndexFileName)) || File.Exists(System.IO.Path.Combine(directory, SingleFileName));

    /// <summary>Opens the weights in <paramref name="directory"/> (index first, then model.safetensors).</summary>
    public static SafetensorsCheckpoint Open(string directory, SafetensorsLimits? limits = null)
    {
        directory = System.IO.Path.GetFullPath(directory);
        if (!System.IO.Directory.Exists(directory))
        {
            throw OnnxLoraException.NotFound("checkpoint folder", directory);
        }
        string index = System.IO.Path.Combine(directory, IndexFileName);
        if (File.Exists(index))
        {
            return OpenSharded(directory, index, limits);
        }
        string single = System.IO.Path.Combine(directory, SingleFileName);
        if (!File.Exists(single))
        {
            throw FormatThrow.Invalid(directory, $"no {SingleFileName} or {IndexFileName} found; expected a Hugging Face safetensors checkpoint folder.");
        }
        var file = SafetensorsFile.Open(single, limits);
        var owner = file.Tensors.ToDictionary(t => t.Name, _ => file, StringComparer.Ordinal);
        return new SafetensorsCheckpoint(directory, [file], owner, null, new Dictionary<string, JsonElement>());
    }

    private static SafetensorsCheckpoint OpenSharded(string directory, string indexPath, SafetensorsLimits? limits)
    {
        var (weightMap, metadata) = ReadIndex(indexPath);
        var files = new List<SafetensorsFile>();
        var byShard = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
        try
        {
            foreach (string shard in weightMap.Values.Distinct(StringComparer.Ordinal))
            {
                string path = System.IO.Path.Combine(directory, shard);
                if (!File.Exists(path))
                {
                    throw FormatThrow.Invalid(indexPath, $"weight_map names shard '{shard}'", "no such file", "every listed shard beside the index");
                }
                var file = SafetensorsFile.Open(path, limits);
                files.Add(file);
                byShard[shard] = file;
            }
            var owner = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
            foreach (var (tensor, shard) in weightMap)
            {
                var file = byShard[shard];
                if (!file.Contains(tensor))
                {
                    throw FormatThrow.Invalid(indexPath, $"weight_map puts '{tensor}' in '{shard}'", "no such tensor in that shard", "the shard to hold it");
                }
                owner[tensor] = file;
            }
            foreach (var file in files)
            {
                foreach (var t in file.Tensors)
                {
                    if (!owner.TryGetValue(t.Name, out var listed))
                    {
                        throw FormatThrow.Invalid(indexPath, $"tensor '{t.Name}' of shard '{System.IO.Path.GetFileName(file.Path)}'", "not listed in weight_map", "every shard tensor listed");
                    }
                    if (!ReferenceEquals(listed, file))
                    {
                        throw FormatThrow.Invalid(indexPath, $"tensor '{t.Name}'", $"stored in '{System.IO.Path.GetFileName(file.Path)}' too", "each tensor in one shard");
                    }
                }
            }
            return new SafetensorsCheckpoint(directory, files, owner, indexPath, metadata);
        }
        catch
        {
            foreach (var f in files)
            {
                f.Dispose();
            }
            throw;
        }
    }

    /// <summary>Reads and validates an index file: weight_map values must be plain file names in the same folder.</summary>
    internal static (Dictionary<string, string> WeightMap, Dictionary<string, JsonElement> Metadata) ReadIndex(string indexPath)
    {
        JsonDocument doc;
        try
        {
            var info = new FileInfo(indexPath);
            if (info.Length > 256_000_000)
            {
                throw FormatThrow.Invalid(indexPath, "file length", $"{info.Length} bytes", "at most 256 MB for an index");
            }
            doc = JsonDocument.Parse(File.ReadAllBytes(indexPath), new JsonDocumentOptions { MaxDepth = 16 });
        }
        catch (JsonException e)
        {
            throw FormatThrow.Invalid(indexPath, $"not valid JSON ({e.Message})", e);
        }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
            {
                throw FormatThrow.Invalid(indexPath, "weight_map", "none", "an object mapping tensor names to shard files");
            }
            var weightMap = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var p in map.EnumerateObject())
            {
                if (p.Value.ValueKind != JsonValueKind.String)
                {
                    throw FormatThrow.Invalid(indexPath, $"weight_map['{p.Name}']", p.Value.ValueKind.ToString(), "a shard file name");
                }
                string shard = p.Value.GetString()!;
                if (shard.Length == 0 || shard != System.IO.Path.GetFileName(shard) || shard is "." or ".." || shard.Contains('\\'))
                {
                    throw FormatThrow.Invalid(indexPath, $"weight_map['{p.Name}']", $"'{shard}'", "a plain file name in the checkpoint folder (no folders, no '..')");
                }
                if (!weightMap.TryAdd(p.Name, shard))
                {
                    throw FormatThrow.Invalid(indexPath, $"weight_map lists '{p.Name}' twice");
                }
            }
            var metadata = new Dictionary<string, JsonElement>(StringComparer.Ordinal);
            if (root.TryGetProperty("metadata", out var md) && md.ValueKind == JsonValueKind.Object)
            {
                foreach (var p in md.EnumerateObject())
                {
                    metadata[p.Name] = p.Value.Clone();
                }
            }
            return (weightMap, metadata);
        }
    }

    /// <summary>True when some shard holds that tensor.</summary>
    public bool Contains(string name) => _owner.ContainsKey(name);

    /// <summary>The shard holding a tensor, and the tensor.</summary>
    /// <exception cref="OnnxLoraException">No shard holds it (bad input); the message names the checkpoint.</exception>
    public (SafetensorsFile File, TensorInfo Tensor) Locate(string name) =>
        _owner.TryGetValue(name, out var f) ? (f, f.Get(name)) : throw FormatThrow.Invalid(Directory, $"no tensor named '{name}' in the checkpoint.");

    /// <summary>A float tensor's values as fp32.</summary>
    public float[] ReadSingles(string name)
    {
        var (file, tensor) = Locate(name);
        return file.ReadSingles(tensor);
    }

    public void Dispose()
    {
        foreach (var s in Shards)
        {
            s.Dispose();
        }
    }
}
