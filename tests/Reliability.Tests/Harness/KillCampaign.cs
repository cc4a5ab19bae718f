using System.Diagnostics;

namespace OnnxLora.Reliability;

/// <summary>What was under the final output name after a kill.</summary>
internal enum OutputState
{
    /// <summary>Nothing under the final name.</summary>
    Absent,

    /// <summary>The complete output that was there before the killed run, byte for byte.</summary>
    Previous,

    /// <summary>The complete output of the killed run, byte for byte.</summary>
    New,

    /// <summary>Anything else: a partial or mixed output under the final name (a defect).</summary>
    Corrupt,
}

/// <summary>
/// One command to kill: its output name under the work folder and the arguments producing two
/// different outputs, A and B ("{out}" stands for the output path). The campaign alternates between
/// them, so the output present before each killed run always differs from the one it writes.
/// </summary>
internal sealed record KillScenario(string Name, string OutputName, string[] ArgsA, string[] ArgsB)
{
    public const string OutPlaceholder = "{out}";

    public string[] Args(bool b, string output) =>
        (b ? ArgsB : ArgsA).Select(a => a.Replace(OutPlaceholder, output, StringComparison.Ordinal)).ToArray();

    /// <summary>merge of the sample checkpoint with the sample adapter at weight 1 (B) or 0.5 (A).</summary>
    public static KillScenario Merge() => new("merge", "out",
        ["merge", "--model", Tool.TinyLlama, "--adapter", Tool.TinyLlamaLora + "=0.5", "--out", OutPlaceholder, "--force"],
        ["merge", "--model", Tool.TinyLlama, "--adapter", Tool.TinyLlamaLora, "--out", OutPlaceholder, "--force"]);

    /// <summary>export of the merged model (B) over the base model's export (A).</summary>
    public static KillScenario Export() => new("export", "m.onnx",
        ["export", "--model", Tool.TinyLlama, "--mode", "base", "--out", OutPlaceholder, "--force"],
        ["export", "--model", Tool.TinyLlama, "--adapter", Tool.TinyLlamaLora, "--mode", "merged", "--out", OutPlaceholder, "--force"]);

    /// <summary>train (3 steps) with seed 1 (A) or seed 2 (B).</summary>
    public static KillScenario Train() => new("train", "adapter",
        ["train", "--model", Tool.TinyLlama, "--data", Path.Combine(Tool.TinyLlama, "task.jsonl"), "--steps", "3", "--seed", "1", "--out", OutPlaceholder, "--force"],
        ["train", "--model", Tool.TinyLlama, "--data", Path.Combine(Tool.TinyLlama, "task.jsonl"), "--steps", "3", "--seed", "2", "--out", OutPlaceholder, "--force"]);
}

/// <summary>One kill and what it left.</summary>
internal sealed record KillOutcome(int Index, TimeSpan Delay, bool FinishedBeforeKill, OutputState State, int LeftoverHiddenEntries, string? Violation, bool RecoveryOk);

/// <summary>The kills of one scenario, with the normal run time they were spread over.</summary>
internal sealed record KillReport(KillScenario Scenario, TimeSpan NormalRun, IReadOnlyList<KillOutcome> Outcomes)
{
    public int Count(OutputState state) => Outcomes.Count(o => !o.FinishedBeforeKill && o.State == state);

    public int FinishedBeforeKill => Outcomes.Count(o => o.FinishedBeforeKill);

    public IEnumerable<string> Violations => Outcomes.Where(o => o.Violation is not null).Select(o => $"kill #{o.Index} after {o.Delay.TotalMilliseconds:F0} ms: {o.Violation}");
}

/// <summary>
/// Kills merge-export at random moments of its run and checks what is left under the final output
/// name: nothing, the complete previous output, or the complete new one, byte-identical to references
/// made by uninterrupted runs; never anything partial. Hidden leftovers (".name.*") are allowed.
/// After each kill a normal run must succeed and produce the complete new output.
/// </summary>
internal sealed class KillCampaign(string workFolder, int seed)
{
    private readonly Random _random = new(seed);

    /// <summary>Runs <paramref name="kills"/> kills of <paramref name="scenario"/>, spread over 0..1.2× its normal run time.</summary>
    public KillReport Run(KillScenario scenario, int kills, Action<KillOutcome>? progress = null)
    {
        string refs = Path.Combine(workFolder, scenario.Name, "refs");
        string arena = Path.Combine(workFolder, scenario.Name, "arena");
        Directory.CreateDirectory(refs);
        Directory.CreateDirectory(arena);
        string refA = Path.Combine(refs, "a-" + scenario.OutputName);
        string refB = Path.Combine(refs, "b-" + scenario.OutputName);
        RunOk(scenario.Args(false, refA));
        var clock = Stopwatch.StartNew();
        RunOk(scenario.Args(true, refB));
        var normal = clock.Elapsed;
        if (Snapshot.Equal(Snapshot.Of(refA), Snapshot.Of(refB)))
        {
            throw new InvalidOperationException($"{scenario.Name}: outputs A and B are identical; the campaign could not tell them apart.");
        }
        var a = Snapshot.Of(refA);
        var b = Snapshot.Of(refB);

        string output = Path.Combine(arena, scenario.OutputName);
        RunOk(scenario.Args(false, output));
        var outcomes = new List<KillOutcome>();
        for (int i = 0; i < kills; i++)
        {
            bool writesB = i % 2 == 0;
            var (previous, next) = writesB ? (a, b) : (b, a);
            var delay = TimeSpan.FromMilliseconds(_random.NextDouble() * 1.2 * normal.TotalMilliseconds);
            bool finished;
            using (var child = Tool.Start(scenario.Args(writesB, output)))
            {
                finished = child.ExitsWithin(delay);
                if (!finished)
                {
                    child.Kill();
                }
            }
            var state = Classify(output, previous, next);
            var (hidden, strays) = Leftovers(arena, scenario.OutputName);
            string? violation = state == OutputState.Corrupt ? $"partial or mixed output under {output}: {Snapshot.Describe(output)}"
                : strays.Count > 0 ? $"visible leftovers beside the output: {string.Join(", ", strays)}"
                : finished && state != OutputState.New ? $"the run finished but the output is {state}"
                : null;
            var recovery = Tool.Run(scenario.Args(writesB, output));
            bool recoveryOk = recovery.ExitCode == 0 && Classify(output, previous, next) == OutputState.New;
            if (!recoveryOk)
            {
                violation ??= $"the normal run after the kill failed or wrote something else: {recovery}";
            }
            var outcome = new KillOutcome(i, delay, finished, state, hidden, violation, recoveryOk);
            outcomes.Add(outcome);
            progress?.Invoke(outcome);
            RemoveHiddenLeftovers(arena, scenario.OutputName);
        }
        return new KillReport(scenario, normal, outcomes);
    }

    private static OutputState Classify(string output, Snapshot previous, Snapshot next)
    {
        if (!File.Exists(output) && !Directory.Exists(output))
        {
            return OutputState.Absent;
        }
        var now = Snapshot.Of(output);
        return Snapshot.Equal(now, previous) ? OutputState.Previous
            : Snapshot.Equal(now, next) ? OutputState.New
            : OutputState.Corrupt;
    }

    /// <summary>Hidden entries (".name.…": temp files, lock file, moved-aside old output) and any other visible entry (a stray).</summary>
    private static (int Hidden, List<string> Strays) Leftovers(string arena, string outputName)
    {
        int hidden = 0;
        var strays = new List<string>();
        foreach (string entry in Directory.EnumerateFileSystemEntries(arena))
        {
            string name = Path.GetFileName(entry);
            if (name == outputName)
            {
                continue;
            }
            if (name.StartsWith('.' + outputName + '.', StringComparison.Ordinal))
            {
                hidden++;
            }
            else
            {
                strays.Add(name);
            }
        }
        return (hidden, strays);
    }

    private static void RemoveHiddenLeftovers(string arena, string outputName)
    {
        foreach (string entry in Directory.EnumerateFileSystemEntries(arena, '.' + outputName + ".*"))
        {
            if (Directory.Exists(entry))
            {
                Directory.Delete(entry, recursive: true);
            }
            else
            {
                File.Delete(entry);
            }
        }
    }

    private static void RunOk(string[] args)
    {
        var run = Tool.Run(args);
        if (run.ExitCode != 0)
        {
            throw new InvalidOperationException($"merge-export {string.Join(' ', args)} failed: {run}");
        }
    }
}

/// <summary>The bytes of a file, or of every file of a folder by relative name.</summary>
internal sealed class Snapshot
{
    private readonly SortedDictionary<string, byte[]> _files = new(StringComparer.Ordinal);

    public static Snapshot Of(string path)
    {
        var s = new Snapshot();
        if (File.Exists(path))
        {
            s._files[""] = File.ReadAllBytes(path);
        }
        else if (Directory.Exists(path))
        {
            foreach (string f in Directory.EnumerateFiles(path, "*", SearchOption.AllDirectories))
            {
                s._files[Path.GetRelativePath(path, f)] = File.ReadAllBytes(f);
            }
        }
        return s;
    }

    public static bool Equal(Snapshot x, Snapshot y) =>
        x._files.Count == y._files.Count
        && x._files.All(kv => y._files.TryGetValue(kv.Key, out var other) && kv.Value.AsSpan().SequenceEqual(other));

    /// <summary>Names and sizes, for failure messages.</summary>
    public static string Describe(string path) =>
        File.Exists(path) ? $"file of {new FileInfo(path).Length} bytes"
        : string.Join(", ", Directory.EnumerateFiles(path, "*", SearchOption.AllDirectories).Select(f => $"{Path.GetRelativePath(path, f)} ({new FileInfo(f).Length} B)"));

    /// <summary>Relative names of the files whose bytes differ between two folders (or "" for two files).</summary>
    public static IEnumerable<string> Differences(Snapshot x, Snapshot y) =>
        x._files.Keys.Union(y._files.Keys).Where(k => !x._files.TryGetValue(k, out var a) || !y._files.TryGetValue(k, out var b) || !a.AsSpan().SequenceEqual(b));

    public int FileCount => _files.Count;
}
