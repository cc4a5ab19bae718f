namespace OnnxLora.Core.IO;

/// <summary>
/// A file written under a temporary name in its destination folder and renamed to its final name
/// only by <see cref="Commit"/>, after its data is flushed to disk. Disposing without committing
/// deletes the temporary file, so a failed or interrupted write never leaves a partial file under
/// the final name.
/// </summary>
public sealed class AtomicFile : IDisposable
{
    /// <summary>Bytes written between two requests to start write-back (<see cref="NoteWritten"/>).</summary>
    private const long WritebackEveryBytes = 64L << 20;

    private readonly bool _overwrite;
    private bool _committed;
    private long _sinceWriteback;
    private int _writebackRunning;

    private AtomicFile(string finalPath, string tempPath, FileStream stream, bool overwrite)
    {
        FinalPath = finalPath;
        TempPath = tempPath;
        Stream = stream;
        _overwrite = overwrite;
    }

    /// <summary>Where the file will be once committed.</summary>
    public string FinalPath { get; }

    /// <summary>Where it is written meanwhile (same folder, hidden name).</summary>
    public string TempPath { get; }

    /// <summary>The stream to write to.</summary>
    public FileStream Stream { get; }

    /// <summary>Starts writing <paramref name="finalPath"/>.</summary>
    /// <exception cref="OnnxLoraException"><paramref name="finalPath"/> exists and <paramref name="overwrite"/> is false (bad input).</exception>
    public static AtomicFile Create(string finalPath, bool overwrite = false)
    {
        finalPath = System.IO.Path.GetFullPath(finalPath);
        if (!overwrite && (File.Exists(finalPath) || Directory.Exists(finalPath)))
        {
            throw OnnxLoraException.OutputExists(finalPath);
        }
        string dir = System.IO.Path.GetDirectoryName(finalPath)!;
        Directory.CreateDirectory(dir);
        string temp = TempNameBeside(finalPath);
        var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, 1 << 16);
        return new AtomicFile(finalPath, temp, stream, overwrite);
    }

    /// <summary>A fresh hidden name in the same folder as <paramref name="finalPath"/>.</summary>
    public static string TempNameBeside(string finalPath)
    {
        string dir = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(finalPath))!;
        return System.IO.Path.Combine(dir, $".{System.IO.Path.GetFileName(finalPath)}.{Guid.NewGuid():N}.partial");
    }

    /// <summary>
    /// Counts <paramref name="bytes"/> just written (by <see cref="Stream"/> or through its handle); every 64 MiB asks the
    /// kernel to start writing the file's dirty pages to disk (<see cref="FileRange.StartWriteback"/>), so a large file's
    /// write-back overlaps the work that produces it instead of all waiting for <see cref="Commit"/>'s fsync. The request
    /// runs on a thread-pool thread (the kernel allocates blocks and queues the I/O in the caller's time: tens of
    /// milliseconds per request, measured), one at a time; call this from one thread at a time (the one writing).
    /// </summary>
    public void NoteWritten(long bytes)
    {
        _sinceWriteback += bytes;
        if (_sinceWriteback < WritebackEveryBytes || Interlocked.CompareExchange(ref _writebackRunning, 1, 0) != 0)
        {
            return;
        }
        _sinceWriteback = 0;
        Stream.Flush();
        var handle = Stream.SafeFileHandle;
        bool added = false;
        handle.DangerousAddRef(ref added);
        ThreadPool.UnsafeQueueUserWorkItem(_ =>
        {
            try
            {
                FileRange.StartWriteback(handle);
            }
            finally
            {
                handle.DangerousRelease();
                Volatile.Write(ref _writebackRunning, 0);
            }
        }, null);
    }

    /// <summary>Flushes to disk, closes and renames to the final name.</summary>
    public void Commit()
    {
        ObjectDisposedException.ThrowIf(_committed, this);
        Stream.Flush(flushToDisk: true);
        Stream.Dispose();
        if (!_overwrite && (File.Exists(FinalPath) || Directory.Exists(FinalPath)))
        {
            File.Delete(TempPath);
            throw OnnxLoraException.OutputAppeared(FinalPath);
        }
        File.Move(TempPath, FinalPath, overwrite: true);
        _committed = true;
    }

    public void Dispose()
    {
        if (_committed)
        {
            return;
        }
        Stream.Dispose();
        try
        {
            File.Delete(TempPath);
        }
        catch (IOException)
        {
            // Best effort: a leftover hidden .partial file is harmless and never has the final name.
        }
    }
}
