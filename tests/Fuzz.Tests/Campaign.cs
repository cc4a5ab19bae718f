using CsCheck;
using OnnxLora.Core;

namespace OnnxLora.Fuzz.Tests;

/// <summary>
/// Runs one time-bounded mutation campaign: each mutant is written to <c>fileName</c> inside a scratch
/// folder (which prepare has filled with the valid files), then open
/// must either succeed or throw a bad-input <see cref="OnnxLoraException"/>; any other exception fails
/// the test with the shrunk input.
/// </summary>
internal static class Campaign
{
    public static (long Tried, long Accepted, long Rejected) Run(
        byte[] original, string fileName, Action<string> prepare, Action<string> open)
    {
        string dir = Path.Combine(Path.GetTempPath(), "onnxlora-fuzz-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        long tried = 0, accepted = 0, rejected = 0;
        try
        {
            prepare(dir);
            string target = Path.Combine(dir, fileName);
            Mutator.Mutants(original).Sample(mutant =>
            {
                File.WriteAllBytes(target, mutant);
                tried++;
                try
                {
                    open(dir);
                    accepted++;
                }
                catch (OnnxLoraException e) when (e.Kind == ErrorKind.BadInput)
                {
                    rejected++;
                }
            }, time: Mutator.Seconds, threads: 1);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
        return (tried, accepted, rejected);
    }
}
