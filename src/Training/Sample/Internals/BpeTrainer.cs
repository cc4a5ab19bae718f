using System.Text.RegularExpressions;
using OnnxLora.Training.Data.Internals;

namespace OnnxLora.Training.Sample.Internals;

/// <summary>
/// Learns a byte-level BPE vocabulary from a corpus, deterministically: words are split with GPT-2's
/// pattern and mapped to byte symbols; each round merges the most frequent adjacent pair (ties go to
/// the ordinally smallest pair) until the vocabulary is full or no pair occurs twice.
/// </summary>
internal static class BpeTrainer
{
    /// <summary>The learned merges in rank order, each as (left, right).</summary>
    public static List<(string Left, string Right)> Train(IEnumerable<string> corpus, int maxMerges)
    {
        var regex = new Regex(TokenizerJson.Gpt2Pattern);
        var wordCounts = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (string text in corpus)
        {
            foreach (Match m in regex.Matches(text))
            {
                string word = ByteLevelAlphabet.Encode(m.Value);
                wordCounts[word] = wordCounts.GetValueOrDefault(word) + 1;
            }
        }
        var words = wordCounts.OrderBy(kv => kv.Key, StringComparer.Ordinal)
            .Select(kv => (Symbols: kv.Key.Select(c => c.ToString()).ToList(), Count: kv.Value))
            .ToList();
        var merges = new List<(string, string)>();
        while (merges.Count < maxMerges)
        {
            var pairs = new Dictionary<(string, string), int>();
            foreach (var (symbols, count) in words)
            {
                for (int i = 0; i + 1 < symbols.Count; i++)
                {
                    var pair = (symbols[i], symbols[i + 1]);
                    pairs[pair] = pairs.GetValueOrDefault(pair) + count;
                }
            }
            if (pairs.Count == 0)
            {
                break;
            }
            var best = pairs.OrderByDescending(kv => kv.Value)
                .ThenBy(kv => kv.Key.Item1, StringComparer.Ordinal)
                .ThenBy(kv => kv.Key.Item2, StringComparer.Ordinal)
                .First();
            if (best.Value < 2)
            {
                break;
            }
            var (left, right) = best.Key;
            merges.Add((left, right));
            string merged = left + right;
            foreach (var (symbols, _) in words)
            {
                for (int i = 0; i + 1 < symbols.Count; i++)
                {
                    if (symbols[i] == left && symbols[i + 1] == right)
                    {
                        symbols[i] = merged;
                        symbols.RemoveAt(i + 1);
                    }
                }
            }
        }
        return merges;
    }
}
