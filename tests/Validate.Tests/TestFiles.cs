using System.Globalization;
using System.Text;

namespace OnnxLora.Validate.Tests;

/// <summary>A temp folder deleted on dispose, and the standard tiny models written into it.</summary>
internal sealed class TestFiles : IDisposable
{
    public TestFiles(int vocab = 48, int hidden = 16, int rank = 4, int seed = 7)
    {
        Dir = Path.Combine(Path.GetTempPath(), "onnxlora-validate-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Dir);
        Lm = new TinyLm(vocab, hidden, rank, seed);
    }

    public string Dir { get; }

    public TinyLm Lm { get; }

    public string File(string name) => Path.Combine(Dir, name);

    /// <summary>The merged model (W + s·A·B as one MatMul).</summary>
    public string Merged(Func<TinyLm.Graph, TinyLm.Graph>? change = null, string name = "merged.onnx") =>
        Lm.Write(File(name), (change ?? (g => g))(new TinyLm.Graph { Weight = Lm.MergedW() }));

    /// <summary>The unmerged model (base MatMul plus the LoRA branch as separate nodes).</summary>
    public string Unmerged(Func<TinyLm.Graph, TinyLm.Graph>? change = null, string name = "unmerged.onnx") =>
        Lm.Write(File(name), (change ?? (g => g))(new TinyLm.Graph { Weight = Lm.W, LoraBranch = true }));

    /// <summary>The base model (W only).</summary>
    public string Base(Func<TinyLm.Graph, TinyLm.Graph>? change = null, string name = "base.onnx") =>
        Lm.Write(File(name), (change ?? (g => g))(new TinyLm.Graph { Weight = Lm.W }));

    /// <summary>Writes a JSON input file with input_ids and attention_mask.</summary>
    public string JsonInputs(long[][] ids, long[][] mask, string name = "inputs.json")
    {
        static string Rows(long[][] rows) => "[" + string.Join(",", rows.Select(r => "[" + string.Join(",", r.Select(x => x.ToString(CultureInfo.InvariantCulture))) + "]")) + "]";
        string path = File(name);
        System.IO.File.WriteAllText(path, $"{{\"input_ids\": {Rows(ids)}, \"attention_mask\": {Rows(mask)}}}", Encoding.UTF8);
        return path;
    }

    public static ValidationOptions Cpu { get; } = ValidationOptions.Default with
    {
        Device = ExecutionDevice.Cpu,
        Batch = 2,
        Sequence = 6,
        Warmup = 0,
        Runs = 0,
        IntraOpThreads = 1,
        InterOpThreads = 1,
    };

    public void Dispose()
    {
        try
        {
            Directory.Delete(Dir, recursive: true);
        }
        catch (IOException)
        {
            // Best effort.
        }
    }
}
