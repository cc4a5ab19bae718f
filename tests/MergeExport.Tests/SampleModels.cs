namespace OnnxLora.MergeExport.Tests;

/// <summary>The repository's committed sample checkpoint and adapter (models/).</summary>
internal static class SampleModels
{
    public static string Root { get; } = FindRoot();

    public static string Model => Path.Combine(Root, "models", "tiny-llama");

    public static string Adapter => Path.Combine(Root, "models", "tiny-llama-lora");

    private static string FindRoot()
    {
        string? dir = AppContext.BaseDirectory;
        while (dir is not null && !File.Exists(Path.Combine(dir, "OnnxLora.sln")))
        {
            dir = Path.GetDirectoryName(dir);
        }
        return dir ?? throw new InvalidOperationException("OnnxLora.sln not found above " + AppContext.BaseDirectory);
    }
}
