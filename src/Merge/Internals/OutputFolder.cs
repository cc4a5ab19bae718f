using OnnxLora.Core.IO;

namespace OnnxLora.Merge.Internals;

/// <summary>
/// A folder built under a hidden temporary name beside its destination and renamed into place only
/// when complete; disposing without <see cref="Publish"/> deletes it, so a failed merge leaves no
/// output folder.
/// </summary>
internal sealed class OutputFolder : IDisposable
{
    private readonly bool _overwrite;
    private bool _published;

    private OutputFolder(string finalPath, string tempPath, bool overwrite)
    {
        FinalPath = finalPath;
        TempPath = tempPath;
        _overwrite = overwrite;
    }

    public string FinalPath { get; }

    public string TempPath { get; }

    public static OutputFolder Create(string finalPath, bool overwrite)
    {
        finalPath = Path.GetFullPath(finalPath.TrimEnd('/', '\\'));
        if (!overwrite && (Directory.Exists(finalPath) || File.Exists(finalPath)))
        {
            throw new IOException($"{finalPath}: output exists; pass --force (overwrite) to replace it.");
        }
        Directory.CreateDirectory(Path.GetDirectoryName(finalPath)!);
        string temp = AtomicFile.TempNameBeside(finalPath);
        Directory.CreateDirectory(temp);
        return new OutputFolder(finalPath, temp, overwrite);
    }

    public void Publish()
    {
        if (Directory.Exists(FinalPath) || File.Exists(FinalPath))
        {
            if (!_overwrite)
            {
                throw new IOException($"{FinalPath}: output appeared while writing; pass --force (overwrite) to replace it.");
            }
            string old = AtomicFile.TempNameBeside(FinalPath) + ".old";
            if (File.Exists(FinalPath))
            {
                File.Move(FinalPath, old);
                Directory.Move(TempPath, FinalPath);
                File.Delete(old);
            }
            else
            {
                Directory.Move(FinalPath, old);
                Directory.Move(TempPath, FinalPath);
                TryDelete(old);
            }
        }
        else
        {
            Directory.Move(TempPath, FinalPath);
        }
        _published = true;
    }

    public void Dispose()
    {
        if (!_published)
        {
            TryDelete(TempPath);
        }
    }

    private static void TryDelete(string path)
    {
        try
        {
            if (Directory.Exists(path))
            {
                Directory.Delete(path, recursive: true);
            }
        }
        catch (IOException)
        {
            // Best effort: a hidden leftover never has the final name.
        }
        catch (UnauthorizedAccessException)
        {
            // Same.
        }
    }
}
