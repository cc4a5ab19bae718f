using System.Diagnostics;
using System.Text;

namespace OnnxLora.Generate.Internals;

/// <summary>
/// Collects a generation as it happens: each new token with its latency (the first one from <see cref="Start"/>,
/// then each from the previous token), its text passed on to the caller's callback, and the result.
/// </summary>
internal sealed class GenerationRecorder(IReadOnlyList<int> promptTokens, Action<string>? onText)
{
    private readonly Stopwatch _clock = new();
    private readonly List<int> _tokens = [];
    private readonly List<double> _tokenMs = [];
    private readonly StringBuilder _text = new();
    private double _firstMs;

    public int Count => _tokens.Count;

    /// <summary>Starts the clock, just before the prompt's forward pass.</summary>
    public void Start() => _clock.Restart();

    /// <summary>Records <paramref name="token"/> (its text <paramref name="piece"/>, when known) and restarts the clock.</summary>
    public void Add(int token, string? piece)
    {
        double ms = _clock.Elapsed.TotalMilliseconds;
        if (_tokens.Count == 0)
        {
            _firstMs = ms;
        }
        else
        {
            _tokenMs.Add(ms);
        }
        _tokens.Add(token);
        if (piece is not null)
        {
            _text.Append(piece);
            onText?.Invoke(piece);
        }
        _clock.Restart();
    }

    public GenerationResult Result() => new([.. promptTokens], _tokens, _text.ToString(), _firstMs, _tokenMs);
}
