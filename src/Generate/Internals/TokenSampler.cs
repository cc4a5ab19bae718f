namespace OnnxLora.Generate.Internals;

/// <summary>
/// Picks the next token from one row of logits: argmax (the first of equal maxima) when greedy; otherwise
/// softmax(logits / temperature), kept to the top k, then to the smallest most-likely set reaching top p,
/// renormalised and drawn from a seeded generator. Hand-written: a dozen lines over a float span, and neither
/// TorchSharp's nor GenAI's sampler is callable on a plain array; it follows Hugging Face's order of the warpers.
/// </summary>
internal sealed class TokenSampler(GenerationOptions options)
{
    private readonly Random _random = new(options.Seed);

    public int Next(ReadOnlySpan<float> logits)
    {
        if (!options.DoSample)
        {
            int best = 0;
            for (int i = 1; i < logits.Length; i++)
            {
                if (logits[i] > logits[best])
                {
                    best = i;
                }
            }
            return best;
        }
        double temperature = options.Temperature ?? 1.0;
        float max = float.NegativeInfinity;
        foreach (float l in logits)
        {
            max = Math.Max(max, l);
        }
        var candidates = new (int Id, double P)[logits.Length];
        double sum = 0;
        for (int i = 0; i < logits.Length; i++)
        {
            double p = Math.Exp((logits[i] - max) / temperature);
            candidates[i] = (i, p);
            sum += p;
        }
        Array.Sort(candidates, (a, b) => b.P != a.P ? b.P.CompareTo(a.P) : a.Id.CompareTo(b.Id));
        int keep = Math.Min(candidates.Length, options.TopK ?? candidates.Length);
        if (options.TopP is double topP)
        {
            double cumulative = 0;
            for (int i = 0; i < keep; i++)
            {
                cumulative += candidates[i].P / sum;
                if (cumulative >= topP)
                {
                    keep = i + 1;
                    break;
                }
            }
        }
        double total = 0;
        for (int i = 0; i < keep; i++)
        {
            total += candidates[i].P;
        }
        double draw = _random.NextDouble() * total;
        for (int i = 0; i < keep; i++)
        {
            draw -= candidates[i].P;
            if (draw <= 0)
            {
                return candidates[i].Id;
            }
        }
        return candidates[keep - 1].Id;
    }
}
