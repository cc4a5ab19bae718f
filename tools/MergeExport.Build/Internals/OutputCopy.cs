using OnnxLora.Core.IO;

namespace OnnxLora.MergeExport.Build.Internals;

/// <summary>Puts the tool's results in place: atomically, replacing what was there.</summary>
internal static class OutputCopy
{
    /// <summary>Copies <paramref name="source"/> to a temporary name beside <paramref name="destination"/>, flushes it and renames it into place.</summary>
    public static void File(string source, string destination)
    {
        using var target = AtomicFile.Create(destination, overwrite: true);
        using (var input = new FileStream(source, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, FileOptions.SequentialScan))
        {
            input.CopyTo(target.Stream, 1 << 20);
        }
        target.Commit();
    }

    /// <summary>
    /// Replaces the folder <paramref name="destination"/> with a copy of <paramref name="source"/>
    /// (built beside it under a temporary name, then renamed into place). Returns the files copied,
    /// as paths under <paramref name="destination"/>.
    /// </summary>
    public static IReadOnlyList<string> Folder(string source, string destination)
    {
        var copied = new List<string>();
        using var target = AtomicDirectory.Create(destination, overwrite: true);
        foreach (string file in Directory.EnumerateFiles(source, "*", SearchOption.AllDirectories))
        {
            string relative = Path.GetRelativePath(source, file);
            string to = Path.Combine(target.TempPath, relative);
            Directory.CreateDirectory(Path.GetDirectoryName(to)!);
            System.IO.File.Copy(file, to);
            copied.Add(Path.Combine(destination, relative));
        }
        target.Commit();
        return copied;
    }
}
