namespace OnnxLora.Core.IO;

/// <summary>
/// An exclusive lock on an output path, held through a lock file beside it
/// (<c>.&lt;name&gt;.lock</c>) opened with no sharing. A second process writing the same output gets a
/// clear error instead of interleaving its writes. The lock is released on dispose (and by the OS if
/// the process dies).
/// </summary>
public sealed class OutputLock : IDisposable
{
    private readonly FileStream _stream;

    private OutputLock(string lockPath, FileStream stream)
    {
        LockPath = lockPath;
        _stream = stream;
    }

    /// <summary>The lock file.</summary>
    public string LockPath { get; }

    /// <summary>Takes the lock for <paramref name="outputPath"/>, or throws at once if another process holds it.</summary>
    /// <exception cref="OnnxLoraException">Another process is writing this output (bad input: the user runs two jobs on one output).</exception>
    public static OutputLock Acquire(string outputPath)
    {
        string full = Path.GetFullPath(outputPath.TrimEnd(Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar));
        string dir = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(dir);
        string lockPath = Path.Combine(dir, $".{Path.GetFileName(full)}.lock");
        try
        {
            var stream = new FileStream(lockPath, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None, 1, FileOptions.DeleteOnClose);
            stream.SetLength(0);
            var pid = System.Text.Encoding.ASCII.GetBytes(Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture));
            stream.Write(pid);
            stream.Flush();
            return new OutputLock(lockPath, stream);
        }
        catch (IOException e)
        {
            throw OnnxLoraException.Invalid(full, $"another merge-export process is writing this output (lock file {lockPath}); wait for it to finish.", e);
        }
    }

    public void Dispose() => _stream.Dispose();
}
