namespace OnnxLora.MergeExport;

/// <summary>Entry point shared by Program and the in-process CLI tests.</summary>
internal static class Cli
{
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        _ = args;
        _ = stdout;
        stderr.WriteLine("merge-export: no commands yet");
        return 2;
    }
}
