namespace OnnxLora.Core.IO;

/// <summary>
/// Checks, before a large output is written, that the drive it goes to has room for it, so a write
/// fails at once with a clear message instead of deep into the job with a bare "No space left on device".
/// </summary>
public static class DiskSpace
{
    /// <summary>
    /// Throws if the file system holding <paramref name="outputPath"/> has fewer than
    /// <paramref name="bytesNeeded"/> bytes free for this user. Does nothing when the free space cannot
    /// be read (an unknown or unready drive): the write itself then reports any shortage.
    /// </summary>
    /// <param name="outputPath">The file or folder about to be written (it need not exist yet).</param>
    /// <param name="bytesNeeded">How many bytes the write needs (0 or less always passes).</param>
    /// <param name="what">What is written, for the message ("the merged checkpoint").</param>
    /// <exception cref="OnnxLoraException">Not enough free space (bad input: the user's drive must be cleared or another chosen).</exception>
    public static void EnsureAvailable(string outputPath, long bytesNeeded, string what)
    {
        ArgumentException.ThrowIfNullOrEmpty(outputPath);
        if (bytesNeeded <= 0 || FreeBytes(outputPath) is not (long free, string mount))
        {
            return;
        }
        if (free < bytesNeeded)
        {
            throw OnnxLoraException.Invalid(Path.GetFullPath(outputPath), $"writing {what} needs {bytesNeeded:N0} bytes but only {free:N0} are free on {mount}.");
        }
    }

    /// <summary>Free bytes (for this user) and mount point of the file system holding <paramref name="path"/>, or null if unknown.</summary>
    public static (long FreeBytes, string Mount)? FreeBytes(string path)
    {
        DriveInfo? drive = DriveOf(Path.GetFullPath(path));
        if (drive is null)
        {
            return null;
        }
        try
        {
            return drive.IsReady ? (drive.AvailableFreeSpace, drive.RootDirectory.FullName) : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>The drive whose root is the longest prefix of <paramref name="fullPath"/> (on Linux, the innermost mount).</summary>
    private static DriveInfo? DriveOf(string fullPath)
    {
        DriveInfo? best = null;
        int bestLength = -1;
        StringComparison comparison = OperatingSystem.IsWindows() ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal;
        DriveInfo[] drives;
        try
        {
            drives = DriveInfo.GetDrives();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
        foreach (var drive in drives)
        {
            string root = drive.RootDirectory.FullName;
            if (root.Length > bestLength && IsUnder(fullPath, root, comparison))
            {
                best = drive;
                bestLength = root.Length;
            }
        }
        return best;
    }

    private static bool IsUnder(string path, string root, StringComparison comparison)
    {
        string trimmed = root.TrimEnd(Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar);
        if (trimmed.Length == 0)
        {
            return true; // "/" holds everything
        }
        return path.StartsWith(trimmed, comparison)
            && (path.Length == trimmed.Length || path[trimmed.Length] == Path.DirectorySeparatorChar || path[trimmed.Length] == Path.AltDirectorySeparatorChar);
    }
}
