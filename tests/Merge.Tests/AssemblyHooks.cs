namespace OnnxLora.Merge.Tests;

[TestClass]
public sealed class AssemblyHooks
{
    [AssemblyCleanup]
    public static void DeleteScratch() => TestData.DeleteAll();
}
