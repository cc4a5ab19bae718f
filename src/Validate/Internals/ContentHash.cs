using System.Security.Cryptography;

namespace OnnxLora.Validate.Internals;

/// <summary>The content hash of a model (<see cref="ModelReport.ContentSha256"/>).</summary>
internal static class ContentHash
{
    /// <summary>
    /// SHA-256 of the bytes of <paramref name="model"/> followed by those of each of <paramref name="externalData"/>
    /// that exists, streamed (nothing is held in memory), as lower-case hex.
    /// </summary>
    public static string Sha256(string model, IEnumerable<string> externalData)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = new byte[1 << 20];
        foreach (string file in externalData.Prepend(model).Where(File.Exists))
        {
            using var stream = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan);
            int read;
            while ((read = stream.Read(buffer)) > 0)
            {
                hash.AppendData(buffer, 0, read);
            }
        }
        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }
}
