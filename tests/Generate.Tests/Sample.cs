using Microsoft.ML.OnnxRuntimeGenAI;

namespace OnnxLora.Generate.Tests;

/// <summary>The committed sample checkpoint and adapter, and GenAI's process-wide handle.</summary>
[TestClass]
public static class Sample
{
    private static OgaHandle? _handle;

    public static string RepoRoot { get; } = FindRepoRoot();

    /// <summary>models/tiny-llama: llama, 4 layers, 4 heads over 2 kv heads, vocab 512, 64 positions, byte-level BPE tokenizer.</summary>
    public static string TinyLlama => Path.Combine(RepoRoot, "models", "tiny-llama");

    /// <summary>models/tiny-llama-lora: the LoRA adapter trained on it (active → passive rewrite).</summary>
    public static string TinyLlamaLora => Path.Combine(RepoRoot, "models", "tiny-llama-lora");

    [AssemblyInitialize]
    public static void Start(TestContext context)
    {
        System.Globalization.CultureInfo.DefaultThreadCurrentCulture = System.Globalization.CultureInfo.InvariantCulture;
        _handle = new OgaHandle();
    }

    [AssemblyCleanup]
    public static void Stop() => _handle?.Dispose();

    private static string FindRepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "OnnxLora.sln")))
            {
                return dir.FullName;
            }
        }
        throw new InvalidOperationException("OnnxLora.sln not found above " + AppContext.BaseDirectory);
    }
}
