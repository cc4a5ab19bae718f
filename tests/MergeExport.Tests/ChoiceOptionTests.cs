using System.CommandLine;
using OnnxLora.Core;
using OnnxLora.MergeExport.Commands;
using OnnxLora.MergeExport.Internals;
using OnnxLora.Validate;

namespace OnnxLora.MergeExport.Tests;

/// <summary>Options with a fixed set of words: typed values, default when absent, parse errors naming the option.</summary>
[TestClass]
public sealed class ChoiceOptionTests
{
    private static ChoiceOption<DType?> DTypeOption() => new("--dtype", "Output dtype.", null,
        ("keep", null), ("fp32", DType.F32), ("fp16", DType.F16), ("bf16", DType.BF16));

    private static (ParseResult Parse, ChoiceOption<DType?> Option) Parse(params string[] args)
    {
        var option = DTypeOption();
        var root = new RootCommand { option };
        return (root.Parse(args), option);
    }

    [TestMethod]
    [DataRow("keep", null)]
    [DataRow("fp32", DType.F32)]
    [DataRow("fp16", DType.F16)]
    [DataRow("bf16", DType.BF16)]
    public void Word_ParsesToItsValue(string word, DType? expected)
    {
        var (parse, option) = Parse("--dtype", word);

        Assert.IsEmpty(parse.Errors, string.Join("; ", parse.Errors.Select(e => e.Message)));
        Assert.AreEqual(expected, option.Read(parse));
    }

    [TestMethod]
    public void Absent_ReadsTheDefault_AndHelpShowsItsWord()
    {
        var (parse, option) = Parse();

        Assert.IsEmpty(parse.Errors);
        Assert.IsNull(option.Read(parse));
        StringAssert.EndsWith(option.Description, "[default: keep]");
        CollectionAssert.AreEqual(new[] { "keep", "fp32", "fp16", "bf16" }, option.Words.ToArray());
    }

    [TestMethod]
    [DataRow("F16")]
    [DataRow("float16")]
    [DataRow("")]
    public void UnknownWord_IsAParseErrorNamingTheOptionAndTheWords(string word)
    {
        var (parse, _) = Parse("--dtype", word);

        Assert.HasCount(1, parse.Errors);
        Assert.AreEqual($"--dtype must be one of keep, fp32, fp16, bf16; got '{word}'.", parse.Errors[0].Message);
    }

    [TestMethod]
    public void ValidationOptionSet_MapsDeviceAndPaddingWords()
    {
        var set = new ValidationOptionSet();
        var root = new RootCommand();
        set.AddTo(root);

        var given = set.Read(root.Parse(["--device", "cuda", "--padding", "left"]));
        var absent = set.Read(root.Parse([]));

        Assert.AreEqual(ExecutionDevice.Cuda, given.Device);
        Assert.AreEqual(PaddingSide.Left, given.Padding);
        Assert.AreEqual(ExecutionDevice.Auto, absent.Device);
        Assert.AreEqual(PaddingSide.None, absent.Padding);
        Assert.AreEqual(ExecutionDevice.Cpu, set.Read(root.Parse(["--device", "cpu"])).Device);
        Assert.AreEqual(PaddingSide.Right, set.Read(root.Parse(["--padding", "right"])).Padding);
    }

    /// <summary>Every option of the tool with a fixed set of words: a bad word exits 2 with one line naming the option and every allowed word.</summary>
    [TestMethod]
    [DataRow("merge --adapter {a} --out {o}", "--combine", "delta_sum,linear,cat,svd,ties,ties_svd,dare_linear,dare_ties,dare_linear_svd,dare_ties_svd,magnitude_prune,magnitude_prune_svd")]
    [DataRow("merge --adapter {a} --out {o}", "--majority-sign-method", "total,frequency")]
    [DataRow("merge --adapter {a} --out {o}", "--dtype", "keep,fp32,fp16,bf16")]
    [DataRow("export --model {m} --out {o.onnx}", "--mode", "base,merged,unmerged,adapters")]
    [DataRow("export --model {m} --out {o.onnx}", "--dtype", "fp32,fp16")]
    [DataRow("export --model {m} --out {o.onnx}", "--external-data", "auto,always,never")]
    [DataRow("validate --merged {m.onnx}", "--device", "auto,cuda,cpu")]
    [DataRow("validate --merged {m.onnx}", "--padding", "none,left,right")]
    [DataRow("run", "--device", "auto,cuda,cpu")]
    [DataRow("run", "--padding", "none,left,right")]
    [DataRow("train --model {m} --data {d.jsonl} --out {a}", "--device", "cpu")]
    public void BadWord_ExitsTwoNamingTheOptionAndTheAllowedWords(string command, string option, string words)
    {
        using var dir = new TempDir();
        // {name}: a path in the scratch folder, which must stay empty.
        string[] args = [.. command.Split(' ').Select(a => a.StartsWith('{') ? dir.File(a.Trim('{', '}')) : a), option, "bogus"];

        var (code, stdout, err) = CliHarness.Run(args);

        Assert.AreEqual(2, code, err);
        Assert.AreEqual("", stdout);
        Assert.AreEqual($"merge-export: {option} must be one of {words.Replace(",", ", ", StringComparison.Ordinal)}; got 'bogus'. (see merge-export --help)", err.Trim());
        Assert.IsEmpty(dir.Entries(), "nothing is written on a parse error");
    }
}
