using CsCheck;

namespace OnnxLora.Fuzz.Tests;

/// <summary>Generators of mutated copies of a valid file: byte flips, truncation, insertions, splices of numbers.</summary>
internal static class Mutator
{
    /// <summary>How long each campaign runs: ONNXLORA_FUZZ_SECONDS (default 20 s, enough for CI).</summary>
    public static int Seconds =>
        int.TryParse(Environment.GetEnvironmentVariable("ONNXLORA_FUZZ_SECONDS"), out int s) && s > 0 ? s : 20;

    public static Gen<byte[]> Mutants(byte[] original) =>
        Gen.Select(Gen.Int[0, 5], Gen.Int[1, 6], Gen.ULong, (kind, count, seed) => Mutate(original, kind, count, seed));

    /// <summary>
    /// A fixed corpus: <paramref name="count"/> mutants whose kinds, counts and seeds come from
    /// <paramref name="seed"/> alone, so the same seed gives the same bytes on every run and machine.
    /// </summary>
    public static IEnumerable<byte[]> Corpus(byte[] original, int seed, int count)
    {
        var rng = new Random(seed);
        for (int i = 0; i < count; i++)
        {
            int kind = rng.Next(0, 6), edits = rng.Next(1, 7);
            ulong mutantSeed = (ulong)rng.NextInt64();
            yield return Mutate(original, kind, edits, mutantSeed);
        }
    }

    private static byte[] Mutate(byte[] original, int kind, int count, ulong seed)
    {
        var rng = new Random((int)(seed ^ (seed >> 32)));
        var bytes = new List<byte>(original);
        for (int i = 0; i < count && bytes.Count > 0; i++)
        {
            int at = rng.Next(bytes.Count);
            switch (kind)
            {
                case 0: // random byte
                    bytes[at] = (byte)rng.Next(256);
                    break;
                case 1: // bit flip
                    bytes[at] ^= (byte)(1 << rng.Next(8));
                    break;
                case 2: // truncate
                    bytes.RemoveRange(at, bytes.Count - at);
                    break;
                case 3: // insert junk
                    bytes.InsertRange(at, Enumerable.Range(0, rng.Next(1, 16)).Select(_ => (byte)rng.Next(256)));
                    break;
                case 4: // digits: turn numbers into other (often huge) numbers
                    if (bytes[at] is >= (byte)'0' and <= (byte)'9')
                    {
                        bytes.InsertRange(at, Enumerable.Repeat((byte)'9', rng.Next(1, 20)));
                    }
                    else
                    {
                        bytes[at] = (byte)('0' + rng.Next(10));
                    }
                    break;
                default: // delete a range
                    bytes.RemoveRange(at, Math.Min(bytes.Count - at, rng.Next(1, 32)));
                    break;
            }
        }
        return [.. bytes];
    }
}
