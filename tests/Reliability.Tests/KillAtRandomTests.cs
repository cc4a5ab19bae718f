namespace OnnxLora.Reliability.Tests;

/// <summary>
/// Kills merge-export at random moments (Process.Kill of the whole tree: no cleanup runs) and checks
/// the final output is never partial. A small campaign; bench/KillBench runs the large one.
/// </summary>
[TestClass]
public sealed class KillAtRandomTests
{
    private const int Kills = 8;

    [TestMethod]
    public void Merge_KilledAtRandomMoments_LeavesNothingOrACompleteOutput() => AssertCampaign(KillScenario.Merge(), seed: 11);

    [TestMethod]
    public void Export_KilledAtRandomMoments_LeavesNothingOrACompleteOutput() => AssertCampaign(KillScenario.Export(), seed: 12);

    private static void AssertCampaign(KillScenario scenario, int seed)
    {
        using var dir = new TempDir();
        var report = new KillCampaign(dir.Path, seed).Run(scenario, Kills);

        Assert.HasCount(Kills, report.Outcomes);
        var violations = report.Violations.ToList();
        Assert.IsEmpty(violations, string.Join("\n", violations));
        Assert.IsTrue(report.Outcomes.All(o => o.RecoveryOk));
        Assert.IsTrue(report.Outcomes.All(o => o.State != OutputState.Corrupt));
    }
}
