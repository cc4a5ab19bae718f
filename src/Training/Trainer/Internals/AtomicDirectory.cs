namespace OnnxLora.Training.TrainerInternals;

/// <summary>
/// A folder filled under a hidden temporary name beside its destination and renamed to its final
/// name only by <see cref="Commit"/>. Disposing without committing deletes the temporary folder, so an
/// interrupted write never leaves a partial folder under the final name.
/// </summary>
internal sealed class AtomicDirectory : IDisposable
{
    private readonly bool _overwrite;
    private bool _committed;

    private AtomicDirectory(string finalPath, string tempPath, bool overwrite)
    {
        FinalPath = finalPath;
        TempPath = tempPath;
        _overwrite = overwrite;
    }

    public string FinalPath { get; }

    public string TempPath { get; }

    /// <summary>Fails early when the destination exists and may not be replaced.</summary>
    public static void CheckDestination(string finalPath, bool overwrite)
    {
        finalPath = Path.GetFullPath(finalPath);
        if (!overwrite && (Directory.Exists(finalPath) || File.Exists(finalPath)))
        {
            throw new IOException($"{finalPath}: output exists; pass --force (overwrite) to replace it.");
        }
        if (File.Exists(finalPath))
        {
            throw new IOException($"{finalPath}: is a file; expected a folder (or nothing) there.");
        }
    }

    public static AtomicDirectory Create(string finalPath, bool overwrite)
    {
        finalPath = Path.TrimEndingDirectorySeparator(Path.GetFullPath(finalPath));
        CheckDestination(finalPath, overwrite);
        string parent = Path.GetDirectoryName(finalPath)!;
        Directory.CreateDirectory(parent);
        string temp = Path.Combine(parent, $".{Path.GetFileName(finalPath)}.{Guid.NewGuid():N}.partial");
        Directory.CreateDirectory(temp);
        return new AtomicDirectory(finalPath, temp, overwrite);
    }

    /// <summary>Renames the filled folder to its final name (replacing an old one only when overwrite was asked).</summary>
    public void Commit()
    {
        ObjectDisposedException.ThrowIf(_committed, this);
        CheckDestination(FinalPath, _overwrite);
        string? old = null;
        if (Directory.Exists(FinalPath))
        {
            old = FinalPath + $".{Guid.NewGuid():N}.old";
            Directory.Move(FinalPath, old);
        }
        Directory.Move(TempPath, FinalPath);
        _committed = true;
        if (old is not null)
        {
            Directory.Delete(old, recursive: true);
        }
    }

    public void Dispose()
    {
        if (_committed)
        {
            return;
        }
        try
        {
            if (Directory.Exists(TempPath))
            {
                Directory.Delete(TempPath, recursive: true);
            }
        }
        catch (IOException)
        {
            // Best effort: a leftover hidden .partial folder never has the final name.
        }
    }
}
