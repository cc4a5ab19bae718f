using System.Globalization;
using OnnxLora.Reliability;

// KillBench: kills merge-export at random moments of its run, many times per command, and counts what
// each kill left under the final output name. Usage: dotnet run -c Release --project bench/KillBench -- [kills=50] [seed=1] [merge,export,train]
CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;
int kills = args.Length > 0 ? int.Parse(args[0], CultureInfo.InvariantCulture) : 50;
int seed = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 1;
string[] which = args.Length > 2 ? args[2].Split(',') : ["merge", "export", "train"];

string work = Path.Combine(Path.GetTempPath(), "onnxlora-killbench", Guid.NewGuid().ToString("N"));
Directory.CreateDirectory(work);
Console.WriteLine($"KillBench: {kills} kills per command, seed {seed}, {Environment.ProcessorCount} cores, work folder {work}");
int failures = 0;
var rows = new List<string>();
try
{
    foreach (string name in which)
    {
        var scenario = name switch
        {
            "merge" => KillScenario.Merge(),
            "export" => KillScenario.Export(),
            "train" => KillScenario.Train(),
            _ => throw new ArgumentException($"unknown command '{name}'; expected merge, export or train."),
        };
        var report = new KillCampaign(work, seed).Run(scenario, kills, o =>
            Console.WriteLine($"  {scenario.Name} #{o.Index,3}: {o.Delay.TotalMilliseconds,7:F0} ms → {(o.FinishedBeforeKill ? "finished" : "killed")}, {o.State}, {o.LeftoverHiddenEntries} hidden leftovers{(o.Violation is null ? "" : " VIOLATION " + o.Violation)}"));
        var violations = report.Violations.ToList();
        failures += violations.Count;
        int killed = kills - report.FinishedBeforeKill;
        int intact = report.Outcomes.Count(o => o.State != OutputState.Corrupt);
        int leftovers = report.Outcomes.Count(o => o.LeftoverHiddenEntries > 0);
        int recovered = report.Outcomes.Count(o => o.RecoveryOk);
        string row = $"| {scenario.Name} | {report.NormalRun.TotalSeconds:F2} | {kills} | {killed} | {report.Count(OutputState.Previous)} | {report.Count(OutputState.Absent)} | {report.Count(OutputState.New)} | {report.FinishedBeforeKill} | {report.Count(OutputState.Corrupt)} | {intact}/{kills} | {leftovers} | {recovered}/{kills} |";
        rows.Add(row);
        Console.WriteLine(row);
        foreach (string v in violations)
        {
            Console.WriteLine("VIOLATION " + v);
        }
    }
}
finally
{
    Directory.Delete(work, recursive: true);
}
Console.WriteLine();
Console.WriteLine("| command | normal run (s) | kills | killed while running | previous output intact (killed before commit) | absent (killed inside commit) | new output complete (killed after commit) | finished before the kill | partial/corrupt | outputs intact | kills leaving hidden leftovers | next normal run OK |");
Console.WriteLine("|---|---|---|---|---|---|---|---|---|---|---|---|");
foreach (string row in rows)
{
    Console.WriteLine(row);
}
return failures == 0 ? 0 : 1;
