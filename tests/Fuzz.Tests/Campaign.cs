using CsCheck;
using OnnxLora.Core;

namespace OnnxLora.Fuzz.Tests;

/// <summary>What a campaign mutates and how it opens the result.</summary>
/// <param name="Name">Names the campaign in messages.</param>
/// <param name="Original">The valid file that is mutated.</param>
/// <param name="FileName">Where each mutant is written in the scratch folder.</param>
/// <param name="Prepare">Fills the scratch folder with the other (valid) files.</param>
/// <param name="Open">Opens and reads the folder the way the product does.</param>
/// <param name="Documented">
/// The exceptions <paramref name="Open"/> may raise for a malformed input, as the APIs it calls document
/// them. Anything else (NullReferenceException, IndexOutOfRange, OutOfMemory, EndOfStream, …) is a bug.
/// </param>
internal sealed record FuzzTarget(string Name, byte[] Original, string FileName, Action<string> Prepare, Action<string> Open, IReadOnlyList<Type> Documented);

/// <summary>What a campaign saw.</summary>
/// <param name="Tried">Inputs opened (with CsCheck, shrinking attempts included).</param>
/// <param name="Accepted">Inputs that opened and read.</param>
/// <param name="Rejected">Inputs rejected with a documented exception.</param>
/// <param name="MaxAllocatedBytes">The most managed bytes one open allocated.</param>
/// <param name="PeakRssGrowthBytes">How much the peak resident set grew over the campaign; null where /proc is missing.</param>
/// <param name="Outcomes">Per input, in order: "accepted" or "rejected TYPE: MESSAGE" (scratch folder as &lt;dir&gt;); recorded for fixed corpora only.</param>
internal sealed record CampaignResult(long Tried, long Accepted, long Rejected, long MaxAllocatedBytes, long? PeakRssGrowthBytes, IReadOnlyList<string> Outcomes);

/// <summary>An input broke a campaign's rule: an undocumented exception, or memory beyond the bound.</summary>
internal sealed class FuzzViolationException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// Runs mutants of a valid file through <see cref="FuzzTarget.Open"/>. Every input must either be accepted
/// or raise one of <see cref="FuzzTarget.Documented"/>, and allocate at most
/// <see cref="AllocationBound"/> managed bytes (GC.GetTotalAllocatedBytes around the open); over a whole
/// campaign, the process's resident memory may grow by at most <see cref="PeakRssGrowthBound"/> (VmRSS read
/// every <see cref="RssCheckInterval"/> inputs, which stops a leaking campaign early, and VmHWM at the end),
/// which catches native and mapped memory the managed count does not see. Two ways to drive it: a fixed-seed corpus
/// (reproducible, its outcomes recorded) and a time-boxed random campaign (CsCheck, which shrinks a
/// failing input and prints the seed that reproduces it).
/// </summary>
internal static class Campaign
{
    /// <summary>Managed bytes one open may allocate, fixed part: stream buffers, parser tables, messages.</summary>
    public const long FixedAllocationBytes = 1 << 20;

    /// <summary>Managed bytes one open may allocate per input byte (copies of the file, parsed objects, decoded values).</summary>
    public const long AllocationPerInputByte = 64;

    /// <summary>Growth of the process's peak resident set a whole campaign may cause (GC heap growth included).</summary>
    public const long PeakRssGrowthBound = 256L << 20;

    /// <summary>Inputs between two readings of the resident set, so a leak stops the campaign early.</summary>
    private const int RssCheckInterval = 64;

    public static long AllocationBound(int inputLength) => FixedAllocationBytes + AllocationPerInputByte * inputLength;

    /// <summary>A fixed corpus of <paramref name="count"/> mutants made from <paramref name="seed"/>; outcomes recorded.</summary>
    public static CampaignResult RunCorpus(FuzzTarget target, int seed, int count) =>
        Run(target, recordOutcomes: true, each =>
        {
            foreach (byte[] mutant in Mutator.Corpus(target.Original, seed, count))
            {
                each(mutant);
            }
        });

    /// <summary>Random mutants for <see cref="Mutator.Seconds"/> seconds (ONNXLORA_FUZZ_SECONDS).</summary>
    public static CampaignResult RunTimed(FuzzTarget target) =>
        Run(target, recordOutcomes: false, each => Mutator.Mutants(target.Original).Sample(each, time: Mutator.Seconds, threads: 1));

    private static CampaignResult Run(FuzzTarget target, bool recordOutcomes, Action<Action<byte[]>> drive)
    {
        string dir = Path.Combine(Path.GetTempPath(), "onnxlora-fuzz-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        long tried = 0, accepted = 0, rejected = 0, maxAllocated = 0;
        var outcomes = new List<string>();
        long? rssGrowth = null;
        try
        {
            target.Prepare(dir);
            string path = Path.Combine(dir, target.FileName);
            // Warm up (JIT, static tables) on the valid file so the first mutant is not charged for it.
            File.WriteAllBytes(path, target.Original);
            target.Open(dir);
            GC.Collect();
            GC.WaitForPendingFinalizers();
            ProcessMemory.TryResetPeak();
            long? rssBefore = ProcessMemory.ResidentBytes();

            string? rssViolation = null;
            drive(mutant =>
            {
                if (rssViolation is not null)
                {
                    return; // stop feeding a campaign that is already over its memory bound
                }
                File.WriteAllBytes(path, mutant);
                tried++;
                string outcome = Try(target, dir, mutant, out long allocated);
                maxAllocated = Math.Max(maxAllocated, allocated);
                if (outcome == "accepted")
                {
                    accepted++;
                }
                else
                {
                    rejected++;
                }
                if (recordOutcomes)
                {
                    outcomes.Add(outcome);
                }
                if (tried % RssCheckInterval == 0 && rssBefore is { } start && ProcessMemory.ResidentBytes() is { } now && now - start > PeakRssGrowthBound)
                {
                    rssViolation = $"{target.Name}: resident memory grew by {now - start:N0} bytes over the first {tried} inputs; the bound is {PeakRssGrowthBound:N0}.";
                }
            });
            if (rssViolation is not null)
            {
                throw new FuzzViolationException(rssViolation);
            }

            if (rssBefore is { } before && ProcessMemory.PeakResidentBytes() is { } peak)
            {
                rssGrowth = peak - before;
                if (rssGrowth > PeakRssGrowthBound)
                {
                    throw new FuzzViolationException($"{target.Name}: peak resident memory grew by {rssGrowth:N0} bytes over {tried} inputs; the bound is {PeakRssGrowthBound:N0}.");
                }
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
        return new CampaignResult(tried, accepted, rejected, maxAllocated, rssGrowth, outcomes);
    }

    /// <summary>Opens one mutant; "accepted" or "rejected TYPE: MESSAGE", or a <see cref="FuzzViolationException"/>.</summary>
    private static string Try(FuzzTarget target, string dir, byte[] mutant, out long allocated)
    {
        long before = GC.GetTotalAllocatedBytes(precise: true);
        string outcome;
        try
        {
            target.Open(dir);
            outcome = "accepted";
        }
        catch (Exception e) when (target.Documented.Any(t => t.IsInstanceOfType(e)) && e is not OnnxLoraException { Kind: not ErrorKind.BadInput })
        {
            outcome = $"rejected {e.GetType().Name}: {e.Message.Replace(dir, "<dir>", StringComparison.Ordinal)}";
        }
        catch (Exception e)
        {
            throw new FuzzViolationException(
                $"{target.Name}: a {mutant.Length}-byte input raised {e.GetType().FullName}, outside the documented set ({string.Join(", ", target.Documented.Select(t => t.Name))}): {e.Message}", e);
        }
        allocated = GC.GetTotalAllocatedBytes(precise: true) - before;
        if (allocated > AllocationBound(mutant.Length))
        {
            throw new FuzzViolationException(
                $"{target.Name}: a {mutant.Length}-byte input made open allocate {allocated:N0} managed bytes ({outcome}); the bound is {AllocationBound(mutant.Length):N0}.");
        }
        return outcome;
    }
}
