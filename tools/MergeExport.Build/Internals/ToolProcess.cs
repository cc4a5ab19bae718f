using System.Collections.Concurrent;
using System.ComponentModel;
using System.Diagnostics;
using System.Text;

namespace OnnxLora.MergeExport.Build.Internals;

/// <summary>How a run of the tool ended.</summary>
/// <param name="Started">False when the process could not be started.</param>
/// <param name="StartError">Why it could not be started, or null.</param>
/// <param name="ExitCode">The exit code (-1 when not started).</param>
/// <param name="Stdout">Everything printed on stdout.</param>
/// <param name="LastStderrLine">The last non-blank stderr line, or null.</param>
internal sealed record ToolRun(bool Started, string? StartError, int ExitCode, string Stdout, string? LastStderrLine);

/// <summary>
/// Runs the merge-export tool: collects stdout (the JSON result) and hands each stderr line to a
/// callback on the calling thread (MSBuild logging must happen on the task's own thread).
/// </summary>
internal static class ToolProcess
{
    /// <summary>
    /// The process to start for <paramref name="toolPath"/>: a .dll runs with the dotnet host
    /// (<paramref name="dotnetHost"/>, else "dotnet"); anything else is an executable, found on PATH
    /// when it has no folder.
    /// </summary>
    public static ProcessStartInfo StartInfo(string toolPath, string? dotnetHost, IReadOnlyList<string> arguments, string workingDirectory)
    {
        ProcessStartInfo info;
        if (toolPath.EndsWith(".dll", StringComparison.OrdinalIgnoreCase))
        {
            info = new ProcessStartInfo(string.IsNullOrWhiteSpace(dotnetHost) ? "dotnet" : dotnetHost);
            info.ArgumentList.Add(toolPath);
        }
        else
        {
            info = new ProcessStartInfo(toolPath);
        }
        foreach (string argument in arguments)
        {
            info.ArgumentList.Add(argument);
        }
        info.WorkingDirectory = workingDirectory;
        info.UseShellExecute = false;
        info.RedirectStandardInput = true;
        info.RedirectStandardOutput = true;
        info.RedirectStandardError = true;
        info.StandardOutputEncoding = Encoding.UTF8;
        info.StandardErrorEncoding = Encoding.UTF8;
        info.CreateNoWindow = true;
        return info;
    }

    public static ToolRun Run(ProcessStartInfo info, Action<string> onStderrLine, CancellationToken cancellationToken)
    {
        using var process = new Process { StartInfo = info };
        using var lines = new BlockingCollection<string>();
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is null)
            {
                lines.CompleteAdding();
            }
            else
            {
                lines.Add(e.Data);
            }
        };
        try
        {
            if (!process.Start())
            {
                return new ToolRun(false, "the process did not start", -1, "", null);
            }
        }
        catch (Win32Exception e)
        {
            return new ToolRun(false, e.Message, -1, "", null);
        }
        process.StandardInput.Close();
        Task<string> stdout = process.StandardOutput.ReadToEndAsync(CancellationToken.None);
        process.BeginErrorReadLine();
        using CancellationTokenRegistration registration = cancellationToken.Register(() => Kill(process));

        string? last = null;
        foreach (string line in lines.GetConsumingEnumerable(CancellationToken.None))
        {
            if (line.Trim().Length > 0)
            {
                last = line;
            }
            onStderrLine(line);
        }
        process.WaitForExit();
        return new ToolRun(true, null, process.ExitCode, stdout.GetAwaiter().GetResult(), last);
    }

    private static void Kill(Process process)
    {
        try
        {
            process.Kill(entireProcessTree: true);
        }
        catch (InvalidOperationException)
        {
            // It has already exited.
        }
        catch (Win32Exception)
        {
            // It is exiting; nothing more can be done.
        }
    }
}
