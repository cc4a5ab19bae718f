namespace OnnxLora.MergeExport.Build.Internals;

/// <summary>
/// Where the merge-export tool (MergeExportToolPath) and the dotnet host are: a path (relative to the
/// project) or a bare command name looked up on PATH.
/// </summary>
internal static class ToolLocation
{
    /// <summary>True when <paramref name="tool"/> is a .dll that runs with the dotnet host.</summary>
    public static bool IsDll(string tool) => tool.Trim().EndsWith(".dll", StringComparison.OrdinalIgnoreCase);

    /// <summary>True when <paramref name="tool"/> names a path rather than a command to look up on PATH.</summary>
    public static bool IsPath(string tool) => tool.Contains('/') || tool.Contains('\\') || Path.IsPathRooted(tool);

    /// <summary>
    /// The full path of <paramref name="tool"/>: resolved against <paramref name="baseDirectory"/> when it
    /// is a path, else the first PATH entry that holds it. Null when there is no such file.
    /// </summary>
    public static string? Find(string tool, string baseDirectory)
    {
        tool = tool.Trim();
        if (tool.Length == 0)
        {
            return null;
        }
        if (IsPath(tool))
        {
            string full = Path.GetFullPath(Path.Combine(baseDirectory, tool));
            return File.Exists(full) ? full : null;
        }
        foreach (string dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
        {
            string candidate = Path.Combine(dir, tool);
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }
        return null;
    }
}
