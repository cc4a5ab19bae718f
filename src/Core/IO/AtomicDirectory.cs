namespace OnnxLora.Core.IO;

/// <summary>
/// A folder output (a merged checkpoint, an adapter) built under a hidden temporary name beside its
/// final path and renamed into place by <see cref="Commit"/>, so its files become visible together
/// or not at all. Disposing without committing deletes the temporary folder.
/// </summary>
public sealed class AtomicDirectory : IDisposable
{
    private readonly bool _overwrite;
    private bool _committed;

    private AtomicDirectory(string finalPath, string tempPath, bool overwrite)
    {
        FinalPath = finalPath;
        TempPath = tempPath;
        _overwrite = overwrite;
    }

    /// <summary>Where the folder will be once committed.</summary>
    public string FinalPath { get; }

    /// <summary>The folder to write into meanwhile.</summary>
    public string TempPath { get; }

    /// <summary>Fails early (before any work) when the destination exists and may not be replaced, or is a file.</summary>
    /// <exception cref="OnnxLoraException">It exists and <paramref name="overwrite"/> is false, or it is a file (bad input).</exception>
    public static void CheckDestination(string finalPath, bool overwrite)
    {
        finalPath = Path.GetFullPath(finalPath);
        if (!overwrite && (Directory.Exists(finalPath) || System.IO.File.Exists(finalPath)))
        {
            throw OnnxLoraException.OutputExists(finalPath);
        }
        if (System.IO.File.Exists(finalPath))
        {
            throw OnnxLoraException.Invalid(finalPath, "is a file; expected a folder (or nothing) there.");
        }
    }

    /// <summary>Starts building <paramref name="finalPath"/>.</summary>
    /// <exception cref="OnnxLoraException">It exists and <paramref name="overwrite"/> is false (bad input).</exception>
    public static AtomicDirectory Create(string finalPath, bool overwrite = false)
    {
        finalPath = Path.GetFullPath(finalPath.TrimEnd(Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar));
        if (!overwrite && (Directory.Exists(finalPath) || System.IO.File.Exists(finalPath)))
        {
            throw OnnxLoraException.OutputExists(finalPath);
        }
        string parent = Path.GetDirectoryName(finalPath)!;
        Directory.CreateDirectory(parent);
        string temp = Path.Combine(parent, $".{Path.GetFileName(finalPath)}.{Guid.NewGuid():N}.partial");
        Directory.CreateDirectory(temp);
        return new AtomicDirectory(finalPath, temp, overwrite);
    }

    /// <summary>Path of a file inside the folder being built.</summary>
    public string File(string name) => Path.Combine(TempPath, name);

    /// <summary>Renames the folder into place; an existing one (with overwrite) is moved aside first and removed after.</summary>
    public void Commit()
    {
        ObjectDisposedException.ThrowIf(_committed, this);
        string? aside = null;
        if (Directory.Exists(FinalPath) || System.IO.File.Exists(FinalPath))
        {
            if (!_overwrite)
            {
                throw OnnxLoraException.OutputAppeared(FinalPath);
            }
            aside = Path.Combine(Path.GetDirectoryName(FinalPath)!, $".{Path.GetFileName(FinalPath)}.{Guid.NewGuid():N}.old");
            if (Directory.Exists(FinalPath))
            {
                Directory.Move(FinalPath, aside);
            }
            else
            {
                System.IO.File.Move(FinalPath, aside);
            }
        }
        Directory.Move(TempPath, FinalPath);
        _committed = true;
        if (aside is not null)
        {
            TryDelete(aside);
        }
    }

    public void Dispose()
    {
        if (!_committed)
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
            else if (System.IO.File.Exists(path))
            {
                System.IO.File.Delete(path);
            }
        }
        catch (IOException)
        {
            // Best effort: leftovers are hidden, never under the final name.
        }
        catch (UnauthorizedAccessException)
        {
        }
    }
}
