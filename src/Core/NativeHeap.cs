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

    // int mallopt(int param, int value); returns 1 on success (glibc), 0 on error.
    [LibraryImport("libc", EntryPoint = "mallopt")]
    private static partial int MallOpt(int param, int value);
}
