using System.Runtime.InteropServices;

namespace OnnxLora.Core;

/// <summary>
/// The process's native heap (glibc malloc, which libtorch's CPU allocator uses). By default glibc raises its mmap threshold
/// each time a large mmapped block is freed (the "dynamic threshold", up to 32 MiB on 64-bit), so after the first training
/// step the activation and gradient buffers of a few MiB come from the heap instead of mmap, and when they are freed the
/// heap keeps them: fragmented between live blocks, they are neither reused for the next, differently shaped buffers nor
/// returned to the system. Measured on a LLaMA of hidden 1024, 16 layers, seq 1024 with gradient checkpointing
/// (training-bench memory-worker): peak RSS 3.0 GB with the dynamic threshold, 1.87 GB with a fixed one of 1 MiB, the
/// resident set after the step 2.80 GB against 1.29 GB; the price is CPU time (fresh mappings fault their pages in), about
/// 1.3× per checkpointed step, so the trainer sets it only with gradient checkpointing (docs/benchmarks-training.md).
/// </summary>
public static partial class NativeHeap
{
    /// <summary>The fixed threshold the trainer sets with gradient checkpointing: blocks of at least this size are mmapped, and unmapped when freed.</summary>
    public const int TrainingMmapThreshold = 1 << 20;

    // glibc malloc.h: #define M_MMAP_THRESHOLD -3. Setting it with mallopt also turns the dynamic threshold off.
    private const int MmapThresholdParameter = -3;

    /// <summary>
    /// Makes blocks of at least <paramref name="bytes"/> always mmapped (so a freed one goes back to the system at once), for
    /// the whole process, with glibc's dynamic adjustment turned off. A no-op where the C library is not glibc or not Linux.
    /// </summary>
    /// <returns>True when the C library took the setting.</returns>
    public static bool UseFixedMmapThreshold(int bytes = TrainingMmapThreshold)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bytes);
        if (!OperatingSystem.IsLinux())
        {
            return false;
        }
        try
        {
            return MallOpt(MmapThresholdParameter, bytes) == 1;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return false;
        }
    }

    /// <summary>
    /// Asks libtorch's CPU allocator to back its buffers of 2 MiB and more with transparent huge pages
    /// (<c>madvise(MADV_HUGEPAGE)</c>), by setting <c>THP_MEM_ALLOC_ENABLE=1</c> in the process environment, which c10's
    /// allocator reads once, at its first allocation: call it before the process's first torch tensor, or it changes nothing.
    /// With <see cref="UseFixedMmapThreshold"/> every such buffer is a fresh mapping, and a huge page faults in 2 MiB at once
    /// instead of 4 KiB: measured −13 % CPU per checkpointed step at hidden 1024 / 16 layers / seq 1024, same peak
    /// (docs/benchmarks-training.md §10). An explicit THP_MEM_ALLOC_ENABLE already in the environment is left as it is.
    /// A no-op where the system is not Linux.
    /// </summary>
    /// <returns>True when the variable is set (by this call or before it).</returns>
    public static bool UseHugePagesForTorchBuffers()
    {
        if (!OperatingSystem.IsLinux())
        {
            return false;
        }
        try
        {
            // The C library's setenv, not Environment.SetEnvironmentVariable, which on Unix changes only .NET's own copy.
            return SetEnv(TorchHugePagesVariable, "1", overwrite: 0) == 0;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return false;
        }
    }

    /// <summary>The variable libtorch's c10 CPU allocator reads (c10/core/impl/alloc_cpu.cpp, libtorch ≥ 2.3).</summary>
    public const string TorchHugePagesVariable = "THP_MEM_ALLOC_ENABLE";

    // int setenv(const char *name, const char *value, int overwrite); 0 on success.
    [LibraryImport("libc", EntryPoint = "setenv", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int SetEnv(string name, string value, int overwrite);

    // int mallopt(int param, int value); returns 1 on success (glibc), 0 on error.
    [LibraryImport("libc", EntryPoint = "mallopt")]
    private static partial int MallOpt(int param, int value);
}
