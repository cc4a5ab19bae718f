using System.Globalization;
using OnnxLora.Training;

namespace OnnxLora.MergeExport.Internals;

/// <summary>
/// Training progress for people: a one-line bar with rate and ETA redrawn in place when stdout is a
/// terminal, plain log lines (every few steps) when it is not, e.g. in CI logs. Silent with --quiet or --json.
/// </summary>
internal sealed class ProgressPrinter(CliContext context, bool interactive) : IProgress<TrainingProgress>
{
    private readonly CliContext _context = context;
    private readonly bool _interactive = interactive;
    private int _lastLogged = -1;

    public static ProgressPrinter For(CliContext context) =>
        new(context, ReferenceEquals(context.Out, Console.Out) && !Console.IsOutputRedirected);

    public void Report(TrainingProgress p)
    {
        if (_context.Quiet || _context.Json)
        {
            return;
        }
        var inv = CultureInfo.InvariantCulture;
        double fraction = p.TotalSteps == 0 ? 1 : (double)p.Step / p.TotalSteps;
        double elapsed = p.Elapsed.TotalSeconds;
        string eta = p.Step == 0 ? "?" : TimeSpan.FromSeconds(elapsed / p.Step * (p.TotalSteps - p.Step)).ToString(@"m\:ss", inv);
        string loss = double.IsNaN(p.Loss) ? "-" : p.Loss.ToString("F4", inv);
        string eval = (p.EvalLoss is { } e ? $" eval {e.ToString("F4", inv)}" : "") + (p.EvalAccuracy is { } a ? $" acc {a.ToString("P1", inv)}" : "");
        string text = $"step {p.Step}/{p.TotalSteps} loss {loss}{eval} lr {p.LearningRate.ToString("G3", inv)} {p.TokensPerSecond.ToString("F0", inv)} tok/s ETA {eta}";
        if (_interactive)
        {
            int width = 24;
            int filled = (int)Math.Round(fraction * width);
            _context.Out.Write($"\r[{new string('#', filled)}{new string('.', width - filled)}] {text}   ");
            if (p.Step == p.TotalSteps)
            {
                _context.Out.WriteLine();
            }
            return;
        }
        int every = Math.Max(1, p.TotalSteps / 10);
        if (p.Step == 0 || p.Step == p.TotalSteps || p.Step - _lastLogged >= every || p.EvalLoss is not null && p.Step != _lastLogged)
        {
            _lastLogged = p.Step;
            _context.Out.WriteLine(text);
        }
    }
}
