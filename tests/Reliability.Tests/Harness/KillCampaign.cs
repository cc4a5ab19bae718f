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
/// <param name="Index">The kill's number in the campaign.</param>
/// <param name="Delay">When the tool was killed, after its start.</param>
/// <param name="FinishedBeforeKill">The run ended before the kill came.</param>
/// <param name="State">What was under the final output name afterwards.</param>
/// <param name="LeftoverHiddenEntries">Hidden entries (".name.*": temporary files, the lock file) beside the output afterwards.</param>
/// <param name="Violation">What went wrong, or null.</param>
/// <param name="RecoveryOk">The normal run after the kill succeeded and wrote the complete new output.</param>
/// <param name="Targeted">The kill waited for the run's first temporary entry (a write under way) instead of a random delay.</param>
/// <param name="TempEntriesAfterKill">Temporary entries (".name.*.partial" being written, ".name.*.old" moved aside) beside
/// the output right after the kill: the kill landed mid-write.</param>
/// <param name="TempEntriesAfterRecovery">Those still there after the normal run that followed (left and ignored) or 0 (cleaned).</param>
internal sealed record KillOutcome(int Index, TimeSpan Delay, bool FinishedBeforeKill, OutputState State, int LeftoverHiddenEntries, string? Violation, bool RecoveryOk,
    bool Targeted = false, int TempEntriesAfterKill = 0, int TempEntriesAfterRecovery = 0)
{
    /// <summary>Killed while a temporary entry of its output existed.</summary>
    public bool MidWrite => !FinishedBeforeKill && TempEntriesAfterKill > 0;
}

/// <summary>The kills of one scenario, with the normal run time they were spread over.</summary>
internal sealed record KillReport(KillScenario Scenario, TimeSpan NormalRun, IReadOnlyList<KillOutcome> Outcomes, TimeSpan WriteWindow = default)
{
    public int Count(OutputState state) => Outcomes.Count(o => !o.FinishedBeforeKill && o.State == state);

    public int FinishedBeforeKill => Outcomes.Count(o => o.FinishedBeforeKill);

    public int MidWriteKills => Outcomes.Count(o => o.MidWrite);

    /// <summary>One line per kill, for failure messages.</summary>
    public string Describe() => $"{Scenario.Name}: normal run {NormalRun.TotalMilliseconds:F0} ms, write window {WriteWindow.TotalMilliseconds:F0} ms\n" + string.Join("\n", Outcomes.Select(o =>
        $"#{o.Index} {(o.Targeted ? "in the write window" : "random")} after {o.Delay.TotalMilliseconds:F0} ms: "
        + $"{(o.FinishedBeforeKill ? "finished" : "killed")}, {o.State}, {o.TempEntriesAfterKill} temporary entries after the kill, {o.TempEntriesAfterRecovery} after recovery"));

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

    /// <summary>
    /// Runs <paramref name="kills"/> kills of <paramref name="scenario"/>, spread over 0..1.2× its normal run time. With
    /// <paramref name="targetWrites"/>, three kills in four instead wait for the run's first temporary entry beside
    /// the output (polled every millisecond) and kills the tool at a random moment of the write window measured on a
    /// normal run (from that entry's appearance to the last temporary entry's removal): random delays over a run
    /// dominated by start-up seldom land in the short window in which files are written and renamed into place.
    /// </summary>
    public KillReport Run(KillScenario scenario, int kills, Action<KillOutcome>? progress = null, bool targetWrites = false)
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
        var writeWindow = RunOkMeasuringWriteWindow(scenario.Args(false, output), arena, scenario.OutputName);
        var outcomes = new List<KillOutcome>();
        for (int i = 0; i < kills; i++)
        {
            bool writesB = i % 2 == 0;
            var (previous, next) = writesB ? (a, b) : (b, a);
            var delay = TimeSpan.FromMilliseconds(_random.NextDouble() * 1.2 * normal.TotalMilliseconds);
            bool targeted = targetWrites && i % 4 != 0;
            bool finished;
            using (var child = Tool.Start(scenario.Args(writesB, output)))
            {
                if (targeted)
                {
                    // u² spreads the kills over the whole window (renames at its end included) but mostly early in it,
                    // where a temporary entry exists on every run: a kill lands mid-write with probability ≥ 1 − (1 − √¾) ≈ 0.87.
                    double u = _random.NextDouble();
                    var into = TimeSpan.FromMilliseconds(u * u * writeWindow.TotalMilliseconds);
                    (finished, delay) = KillDuringWrite(child, arena, scenario.OutputName, into, normal * 5);
                }
                else
                {
                    finished = child.ExitsWithin(delay);
                }
                if (!finished)
                {
                    child.Kill();
                }
            }
            var state = Classify(output, previous, next);
            var (hidden, strays) = Leftovers(arena, scenario.OutputName);
            int tempAfterKill = TempEntries(arena, scenario.OutputName);
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
            var outcome = new KillOutcome(i, delay, finished, state, hidden, violation, recoveryOk, targeted, tempAfterKill, TempEntries(arena, scenario.OutputName));
            outcomes.Add(outcome);
            progress?.Invoke(outcome);
            RemoveHiddenLeftovers(arena, scenario.OutputName);
        }
        return new KillReport(scenario, normal, outcomes, writeWindow);
    }

    /// <summary>
    /// Polls beside the output (every millisecond) until the run's first temporary entry appears, waits
    /// <paramref name="into"/> more, then kills the tool process itself at once (SIGKILL; the caller then kills the rest of
    /// the tree). Returns whether the run finished first, and when it was killed.
    /// </summary>
    private static (bool Finished, TimeSpan At) KillDuringWrite(Tool.Started child, string arena, string outputName, TimeSpan into, TimeSpan limit)
    {
        var clock = Stopwatch.StartNew();
        TimeSpan? seen = null;
        while (clock.Elapsed < limit)
        {
            if (child.Process.HasExited)
            {
                return (true, clock.Elapsed);
            }
            seen ??= TempEntries(arena, outputName) > 0 ? clock.Elapsed : null;
            if (seen is { } start && clock.Elapsed - start >= into)
            {
                try
                {
                    child.Process.Kill();
                    return (false, clock.Elapsed);
                }
                catch (InvalidOperationException)
                {
                    return (true, clock.Elapsed);
                }
            }
            Thread.Sleep(1);
        }
        return (child.Process.HasExited, clock.Elapsed);
    }

    /// <summary>
    /// Runs to the end (it must succeed), polling beside the output every millisecond: how long temporary entries of the
    /// output existed, from the first seen to the last seen (at least 1 ms), which is the window targeted kills aim into.
    /// </summary>
    private static TimeSpan RunOkMeasuringWriteWindow(string[] args, string arena, string outputName)
    {
        using var child = Tool.Start(args);
        var clock = Stopwatch.StartNew();
        TimeSpan? first = null, last = null;
        while (!child.Process.HasExited)
        {
            if (TempEntries(arena, outputName) > 0)
            {
                first ??= clock.Elapsed;
                last = clock.Elapsed;
            }
            Thread.Sleep(1);
        }
        var run = child.WaitForExit(TimeSpan.FromMinutes(3));
        if (run.ExitCode != 0)
        {
            throw new InvalidOperationException($"merge-export {string.Join(' ', args)} failed: {run}");
        }
        return first is { } f && last is { } l ? l - f + TimeSpan.FromMilliseconds(1) : TimeSpan.FromMilliseconds(1);
    }

    /// <summary>Entries being written (".name.*.partial") or moved aside (".name.*.old") beside the output; not the lock file.</summary>
    private static int TempEntries(string arena, string outputName) =>
        Directory.EnumerateFileSystemEntries(arena, '.' + outputName + ".*")
            .Count(e => e.EndsWith(".partial", StringComparison.Ordinal) || e.EndsWith(".old", StringComparison.Ordinal));

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
