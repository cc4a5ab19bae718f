using System.CommandLine;
using System.Text.Json;
using OnnxLora.Core.Peft;
using OnnxLora.MergeExport.Commands;
using OnnxLora.MergeExport.Internals;

namespace OnnxLora.MergeExport.Tests;

/// <summary>The --targets rule: comma/space/repeated names, all-linear, or one value with regex characters as a full-match regex.</summary>
[TestClass]
public sealed class TargetsArgumentTests
{
    private static TargetModules Parse(params string[] values)
    {
        Assert.IsTrue(TargetsArgument.TryParse(values, out var targets, out string? error), error);
        return targets;
    }

    private static string Error(params string[] values)
    {
        Assert.IsFalse(TargetsArgument.TryParse(values, out var targets, out string? error), $"accepted as {targets}");
        return error;
    }

    [TestMethod]
    [DataRow(new[] { "q_proj,v_proj" }, DisplayName = "comma-separated")]
    [DataRow(new[] { "q_proj", "v_proj" }, DisplayName = "space-separated or repeated")]
    [DataRow(new[] { "q_proj,v_proj", "q_proj" }, DisplayName = "repeats dropped")]
    public void NameLists_GiveTheNamesInOrder(string[] values)
    {
        var t = Parse(values);

        Assert.AreEqual(TargetModulesKind.List, t.Kind);
        CollectionAssert.AreEqual(new[] { "q_proj", "v_proj" }, t.Names.ToArray());
        Assert.IsNull(t.Pattern);
    }

    [TestMethod]
    public void RepeatedOptionsAndCommas_AddUp()
    {
        var t = Parse("q_proj", "k_proj,v_proj", "o-proj");

        CollectionAssert.AreEqual(new[] { "q_proj", "k_proj", "v_proj", "o-proj" }, t.Names.ToArray());
    }

    [TestMethod]
    public void DottedNames_AreNamesNotRegexes()
    {
        var t = Parse("self_attn.q_proj,mlp.up_proj");

        Assert.AreEqual(TargetModulesKind.List, t.Kind);
        CollectionAssert.AreEqual(new[] { "self_attn.q_proj", "mlp.up_proj" }, t.Names.ToArray());
    }

    [TestMethod]
    public void AllLinear_Alone()
    {
        Assert.AreEqual(TargetModulesKind.AllLinear, Parse("all-linear").Kind);
    }

    [TestMethod]
    [DataRow(@"model\.layers\.[01]\.self_attn\.(q|k)_proj")]
    [DataRow(@".*_proj")]
    [DataRow(@"model\.layers\.[0-9]{1,2}\.self_attn\.q_proj", DisplayName = "a comma inside a regex stays")]
    [DataRow(@"^lm_head$")]
    public void ValueWithRegexCharacters_IsOneRegexTakenWhole(string pattern)
    {
        var t = Parse(pattern);

        Assert.AreEqual(TargetModulesKind.Regex, t.Kind);
        Assert.AreEqual(pattern, t.Pattern);
        Assert.IsEmpty(t.Names);
    }

    [TestMethod]
    public void Errors_SayWhatIsWrong()
    {
        Assert.AreEqual("--targets 'q_proj,,v_proj': an empty name; expected names of letters, digits, '_' and '-' (dotted for a path suffix) separated by commas, all-linear, or one regex with one of \\ ^ $ * + ? ( ) [ ] { } |.",
            Error("q_proj,,v_proj"));
        StringAssert.StartsWith(Error("q_proj,"), "--targets 'q_proj,': an empty name;");
        StringAssert.StartsWith(Error("q_proj/v_proj"), "--targets 'q_proj/v_proj': 'q_proj/v_proj' is not a module name;");
        StringAssert.StartsWith(Error("self_attn..q_proj"), "--targets 'self_attn..q_proj': 'self_attn..q_proj' is not a module name;");
        Assert.AreEqual(@"--targets '.*_proj' is a regex (it has one of \ ^ $ * + ? ( ) [ ] { } |) and must be the only value; got 2 values ('q_proj' '.*_proj').",
            Error("q_proj", ".*_proj"));
        Assert.AreEqual("--targets all-linear stands alone; got it with q_proj.", Error("all-linear,q_proj"));
        StringAssert.StartsWith(Error("(q|v_proj"), "--targets '(q|v_proj' is not a valid regular expression: ");
    }

    /// <summary>A single dotted name stays a one-name list (PEFT's suffix rule), not a regex.</summary>
    [TestMethod]
    public void SingleDottedName_IsAListMatchingPathSuffixes()
    {
        var only = Parse("self_attn.q_proj");

        Assert.AreEqual(TargetModulesKind.List, only.Kind);
        CollectionAssert.AreEqual(new[] { "self_attn.q_proj" }, only.Names.ToArray());
        foreach (string path in new[] { "self_attn.q_proj", "model.layers.0.self_attn.q_proj", "model.layers.11.self_attn.q_proj" })
        {
            Assert.IsTrue(only.Matches(path), path);
        }
        foreach (string path in new[] { "model.layers.0.xself_attn.q_proj", "model.layers.0.self_attnXq_proj", "model.layers.0.self_attn.q_proj.lora_A", "q_proj" })
        {
            Assert.IsFalse(only.Matches(path), path);
        }
    }

    /// <summary>The option as train declares it: space-separated values, repeats and commas reach the parser together.</summary>
    [TestMethod]
    [DataRow(new[] { "--targets", "q_proj,v_proj" })]
    [DataRow(new[] { "--targets", "q_proj", "v_proj" })]
    [DataRow(new[] { "--targets", "q_proj", "--targets", "v_proj" })]
    [DataRow(new[] { "--targets=q_proj,v_proj" })]
    public void TrainOption_AllFormsGiveTheSameList(string[] args)
    {
        var set = new TrainOptionSet();
        var root = new RootCommand();
        set.AddTo(root);

        var parse = root.Parse(args);

        Assert.IsEmpty(parse.Errors, string.Join("; ", parse.Errors.Select(e => e.Message)));
        CollectionAssert.AreEqual(new[] { "q_proj", "v_proj" }, set.Read(parse).Lora.TargetModules!.Names.ToArray());
        Assert.IsNull(set.Read(root.Parse([])).Lora.TargetModules, "absent: the family's default");
    }

    [TestMethod]
    public void Train_BadTargets_ExitsTwoBeforeLoadingAnything()
    {
        using var dir = new TempDir();

        var (code, _, err) = CliHarness.Run("train", "--model", SampleModels.Model, "--data", Path.Combine(SampleModels.Model, "task.jsonl"),
            "--out", dir.File("a"), "--targets", "q_proj", ".*v_proj");

        Assert.AreEqual(2, code, err);
        StringAssert.Contains(err, "--targets '.*v_proj' is a regex");
        Assert.IsEmpty(dir.Entries());
    }

    [TestMethod]
    public void Train_CommaSeparatedTargets_SavesThemAsTargetModules()
    {
        using var dir = new TempDir();
        string adapter = dir.File("a");

        var (code, _, err) = CliHarness.Run("train", "--model", SampleModels.Model, "--data", Path.Combine(SampleModels.Model, "task.jsonl"),
            "--out", adapter, "--steps", "2", "--batch", "2", "--targets", "q_proj,v_proj");

        Assert.AreEqual(0, code, err);
        using var config = JsonDocument.Parse(File.ReadAllText(Path.Combine(adapter, "adapter_config.json")));
        var saved = config.RootElement.GetProperty("target_modules");
        Assert.AreEqual(JsonValueKind.Array, saved.ValueKind);
        CollectionAssert.AreEqual(new[] { "q_proj", "v_proj" }, saved.EnumerateArray().Select(e => e.GetString()).ToArray());
        using var loaded = Core.Peft.PeftAdapter.Load(adapter);
        CollectionAssert.AreEquivalent(new[] { "q_proj", "v_proj" }, loaded.Modules.Select(m => m.ModulePath[(m.ModulePath.LastIndexOf('.') + 1)..]).Distinct().ToArray());
    }

    [TestMethod]
    public void Train_SingleDottedName_AdaptsThatModuleInEveryLayer()
    {
        using var dir = new TempDir();
        string adapter = dir.File("a");

        var (code, _, err) = CliHarness.Run("train", "--model", SampleModels.Model, "--data", Path.Combine(SampleModels.Model, "task.jsonl"),
            "--out", adapter, "--steps", "1", "--batch", "2", "--targets", "self_attn.k_proj");

        Assert.AreEqual(0, code, err);
        using var loaded = Core.Peft.PeftAdapter.Load(adapter);
        var paths = loaded.Modules.Select(m => m.ModulePath).ToArray();
        Assert.IsNotEmpty(paths);
        Assert.IsTrue(paths.All(p => p.EndsWith(".self_attn.k_proj", StringComparison.Ordinal)), string.Join(", ", paths));
        using var sample = JsonDocument.Parse(File.ReadAllText(Path.Combine(SampleModels.Model, "config.json")));
        Assert.HasCount(sample.RootElement.GetProperty("num_hidden_layers").GetInt32(), paths);
    }
}
