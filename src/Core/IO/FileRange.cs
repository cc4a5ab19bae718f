using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace OnnxLora.Core.IO;

/// <summary>
/// Copies a byte range from one open file to a position in another without passing the bytes through
/// this process where the kernel can do it: Linux's <c>copy_file_range(2)</c>, the call
/// <see cref="File.Copy(string, string)"/> makes for whole files on Linux. Elsewhere, or where the
/// kernel refuses (another file system, an old kernel), it falls back to positioned reads and writes
/// through one bounded buffer. Neither handle's file position is used or moved.
/// </summary>
/// <remarks>
/// .NET has no public API for copying a range between files (File.Copy copies whole files only), hence
/// the small P/Invoke below; it passes explicit offsets, so it is safe with handles other code also
/// reads from with <see cref="RandomAccess"/>.
/// </remarks>
public static partial class FileRange
{
    private const int FallbackChunkBytes = 4 << 20;

    // Largest length passed to one copy_file_range call; the kernel copies at most ~2 GiB per call anyway.
    private const long MaxKernelChunk = 1L << 30;

    // errno values (Linux, all architectures .NET runs on) after which the kernel copy is not retried.
    private const int ENOSYS = 38, EXDEV = 18, EINVAL = 22, EOPNOTSUPP = 95, EBADF = 9, EPERM = 1;

    private const int ESPIPE = 29;

    // SYNC_FILE_RANGE_WRITE: start write-out of the range's dirty pages, do not wait.
    private const uint SyncFileRangeWrite = 2;

    private static volatile bool _kernelCopyUnavailable = !OperatingSystem.IsLinux();

    private static volatile bool _writebackUnavailable = !OperatingSystem.IsLinux();

    private static volatile bool _prefetchUnavailable = !OperatingSystem.IsLinux();

    // POSIX_FADV_WILLNEED on Linux.
    private const int PosixFadvWillNeed = 3;

    /// <summary>
    /// Copies <paramref name="length"/> bytes at <paramref name="sourceOffset"/> of <paramref name="source"/>
    /// to <paramref name="destinationOffset"/> of <paramref name="destination"/>.
    /// </summary>
    /// <exception cref="EndOfStreamException">The source ends before <paramref name="sourceOffset"/> + <paramref name="length"/>
    /// (callers check ranges against the file first; this guards a file that shrank meanwhile).</exception>
    public static void Copy(SafeFileHandle source, long sourceOffset, SafeFileHandle destination, long destinationOffset, long length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(sourceOffset);
        ArgumentOutOfRangeException.ThrowIfNegative(destinationOffset);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        long done = _kernelCopyUnavailable ? 0 : KernelCopy(source, sourceOffset, destination, destinationOffset, length);
        if (done < length)
        {
            BufferedCopy(source, sourceOffset + done, destination, destinationOffset + done, length - done);
        }
    }

    /// <summary>Reads exactly <paramref name="buffer"/>.Length bytes at <paramref name="offset"/>.</summary>
    /// <exception cref="EndOfStreamException">The file ends first.</exception>
    public static void ReadExactly(SafeFileHandle handle, Span<byte> buffer, long offset)
    {
        while (buffer.Length > 0)
        {
            int n = RandomAccess.Read(handle, buffer, offset);
            if (n <= 0)
            {
                throw new EndOfStreamException($"unexpected end of file at offset {offset}");
            }
            buffer = buffer[n..];
            offset += n;
        }
    }

    /// <summary>Bytes copied by the kernel (all of them unless it refused; then the rest is left to the caller).</summary>
    private static unsafe long KernelCopy(SafeFileHandle source, long sourceOffset, SafeFileHandle destination, long destinationOffset, long length)
    {
        bool addedSource = false, addedDestination = false;
        try
        {
            source.DangerousAddRef(ref addedSource);
            destination.DangerousAddRef(ref addedDestination);
            int fdIn = (int)source.DangerousGetHandle(), fdOut = (int)destination.DangerousGetHandle();
            long inOff = sourceOffset, outOff = destinationOffset, done = 0;
            while (done < length)
            {
                nint n = CopyFileRange(fdIn, &inOff, fdOut, &outOff, (nuint)Math.Min(length - done, MaxKernelChunk), 0);
                if (n > 0)
                {
                    done += n;
                    continue;
                }
                if (n == 0)
                {
                    throw new EndOfStreamException($"unexpected end of file at offset {inOff}");
                }
                int errno = Marshal.GetLastPInvokeError();
                if (errno is ENOSYS or EXDEV or EINVAL or EOPNOTSUPP or EBADF or EPERM)
                {
                    if (errno is ENOSYS)
                    {
                        _kernelCopyUnavailable = true;
                    }
                    return done;
                }
                if (errno == 4)
                {
                    continue; // EINTR
                }
                throw new IOException($"copy_file_range failed (errno {errno}) at offset {inOff}", errno);
            }
            return done;
        }
        catch (EntryPointNotFoundException)
        {
            _kernelCopyUnavailable = true;
            return 0;
        }
        catch (DllNotFoundException)
        {
            _kernelCopyUnavailable = true;
            return 0;
        }
        finally
        {
            if (addedSource)
            {
                source.DangerousRelease();
            }
            if (addedDestination)
            {
                destination.DangerousRelease();
            }
        }
    }

    private static void BufferedCopy(SafeFileHandle source, long sourceOffset, SafeFileHandle destination, long destinationOffset, long length)
    {
        byte[] buffer = new byte[(int)Math.Min(FallbackChunkBytes, Math.Max(length, 1))];
        long done = 0;
        while (done < length)
        {
            int n = (int)Math.Min(buffer.Length, length - done);
            ReadExactly(source, buffer.AsSpan(0, n), sourceOffset + done);
            RandomAccess.Write(destination, buffer.AsSpan(0, n), destinationOffset + done);
            done += n;
        }
    }

    /// <summary>
    /// Asks the kernel to start writing <paramref name="handle"/>'s dirty pages to disk now, without waiting for them: Linux's
    /// <c>sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE)</c> over the whole file. A long streaming write that calls it as it
    /// goes keeps the disk busy while the next bytes are computed, so the closing fsync finds little left to write; left
    /// alone, the kernel starts writing back only when a tenth of memory is dirty or the pages are 30 s old. It gives no
    /// durability (the commit's fsync does); where the call is missing or refused it does nothing.
    /// </summary>
    public static void StartWriteback(SafeFileHandle handle)
    {
        if (_writebackUnavailable)
        {
            return;
        }
        bool added = false;
        try
        {
            handle.DangerousAddRef(ref added);
            if (SyncFileRange((int)handle.DangerousGetHandle(), 0, 0, SyncFileRangeWrite) != 0 && Marshal.GetLastPInvokeError() is ENOSYS or EINVAL or ESPIPE)
            {
                _writebackUnavailable = true;
            }
        }
        catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException)
        {
            _writebackUnavailable = true;
        }
        finally
        {
            if (added)
            {
                handle.DangerousRelease();
            }
        }
    }

    /// <summary>
    /// Asks the kernel to start reading <paramref name="length"/> bytes at <paramref name="offset"/> of the file at
    /// <paramref name="path"/> into the page cache, on a thread-pool thread, and returns at once: Linux's
    /// <c>posix_fadvise(POSIX_FADV_WILLNEED)</c>, which queues the reads (and may block while the device's queue is full —
    /// hence the pool thread). A streaming merge or export that asks for its next tensor's bytes this way keeps the disk reading
    /// while it computes the current one, instead of waiting for each read in turn when the input is not cached (a model larger
    /// than the page cache). A hint only: errors and platforms without the call are ignored.
    /// </summary>
    public static void StartPrefetch(string path, long offset, long length)
    {
        if (_prefetchUnavailable || length <= 0)
        {
            return;
        }
        ThreadPool.UnsafeQueueUserWorkItem(_ =>
        {
            try
            {
                using var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
                bool added = false;
                handle.DangerousAddRef(ref added);
                try
                {
                    // Returns the error number itself (not errno); any error leaves only a hint unheeded.
                    _ = PosixFadvise((int)handle.DangerousGetHandle(), offset, length, PosixFadvWillNeed);
                }
                finally
                {
                    if (added)
                    {
                        handle.DangerousRelease();
                    }
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // The file is gone or unreadable: the read that follows reports it.
            }
            catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException)
            {
                _prefetchUnavailable = true;
            }
        }, null);
    }

    // int posix_fadvise(int fd, off_t offset, off_t len, int advice); off_t is 64-bit on the 64-bit Linux targets.
    [LibraryImport("libc", EntryPoint = "posix_fadvise")]
    private static partial int PosixFadvise(int fd, long offset, long length, int advice);

    // int sync_file_range(int fd, off64_t offset, off64_t nbytes, unsigned int flags); nbytes 0 = to the end of the file.
    [LibraryImport("libc", EntryPoint = "sync_file_range", SetLastError = true)]
    private static partial int SyncFileRange(int fd, long offset, long nbytes, uint flags);

    // ssize_t copy_file_range(int fd_in, off64_t *off_in, int fd_out, off64_t *off_out, size_t len, unsigned int flags);
    // (glibc ≥ 2.27; offsets passed explicitly so neither file position moves.)
    [LibraryImport("libc", EntryPoint = "copy_file_range", SetLastError = true)]
    private static unsafe partial nint CopyFileRange(int fdIn, long* offIn, int fdOut, long* offOut, nuint length, uint flags);
}
