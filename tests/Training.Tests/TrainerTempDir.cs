namespace OnnxLora.Training.Tests;

/// <summary>A fresh temporary folder, deleted on dispose.</summary>
internal sealed class TrainerTempDir : IDisposable
{
    public TrainerTempDir()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "onnxlora-trainer-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public string File(params string[] names) => System.IO.Path.Combine([Path, .. names]);

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
            // Best effort.
        }
    }
}
