using OnnxLora.Core.Internals;

namespace OnnxLora.Core.Onnx.Internals;

/// <summary>
/// Resolves a relative path inside a folder the way the operating system will open it (every
/// symbolic link along the way followed), so a reference that escapes the folder by "..", an
/// absolute path or a link is recognised before anything is read.
/// </summary>
internal static class SafePaths
{
    private const int MaxLinkDepth = 40;

    /// <summary>Why <paramref name="relative"/> may not be used as a path inside a folder, or null when it may.</summary>
    public static string? SyntaxProblem(string relative)
    {
        if (relative.Length == 0)
        {
            return "an empty path";
        }
        if (relative.Contains('\0', StringComparison.Ordinal))
        {
            return "a path with a NUL character";
        }
        if (Path.IsPathRooted(relative) || relative.StartsWith('/') || relative.StartsWith('\\')
            || (relative.Length >= 2 && relative[1] == ':'))
        {
            return "an absolute path";
        }
        foreach (string part in relative.Split('/', '\\'))
        {
            if (part == "..")
            {
                return "a path with a '..' segment";
            }
        }
        return null;
    }

    /// <summary>The real path of <paramref name="fullPath"/>, every link along it resolved.</summary>
    public static string RealPath(string fullPath) => RealPath(Path.GetFullPath(fullPath), 0);

    /// <summary>True when <paramref name="realPath"/> lies strictly inside <paramref name="realFolder"/>.</summary>
    public static bool IsInside(string realPath, string realFolder)
    {
        string folder = Path.TrimEndingDirectorySeparator(realFolder) + Path.DirectorySeparatorChar;
        return realPath.StartsWith(folder, StringComparison.Ordinal);
    }

    private static string RealPath(string fullPath, int depth)
    {
        if (depth > MaxLinkDepth)
        {
            throw FormatThrow.Invalid(fullPath, "too many levels of symbolic links.");
        }
        string root = Path.GetPathRoot(fullPath) ?? "/";
        string current = root;
        string[] parts = fullPath[root.Length..].Split(Path.DirectorySeparatorChar, StringSplitOptions.RemoveEmptyEntries);
        foreach (string part in parts)
        {
            if (part == ".")
            {
                continue;
            }
            if (part == "..")
            {
                current = Path.GetDirectoryName(current) ?? root;
                continue;
            }
            string next = Path.Combine(current, part);
            FileSystemInfo info = new FileInfo(next);
            string? target = info.LinkTarget;
            if (target is null)
            {
                current = next;
                continue;
            }
            string absoluteTarget = Path.IsPathRooted(target) ? target : Path.Combine(current, target);
            current = RealPath(Path.GetFullPath(absoluteTarget), depth + 1);
        }
        return current;
    }
}
