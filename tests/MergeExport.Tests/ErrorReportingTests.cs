using System.CommandLine;
using System.Text.Json;
using Onnx;
using OnnxLora.Core;
using OnnxLora.Core.Onnx;
using OnnxLora.MergeExport.Commands;

namespace OnnxLora.MergeExport.Tests;

/// <summary>
/// How merge-export reports a failure: the exit code follows the error's kind (2 bad input, 70 internal, 130
/// cancelled), stderr gets one line, and with --json stdout gets exactly one error object.
/// </summary>
[TestClass]
public sealed class ErrorReportingTests
{
    /// <summary>
    /// A verb whose work trips an argument check of our own library: OnnxTensors.ReplaceData called with fewer values
    /// than the tensor holds. An ArgumentException from our code is our bug, whatever its .NET type suggests.
    /// </summary>
    private sealed class InconsistentCommand(CliContext context)
        : CliCommand("inconsistent", "Calls OnnxTensors.ReplaceData with one value for a tensor of two.", context)
    {
        protected override int Execute(ParseResult parse)
        {
            var tensor = new TensorProto { Name = "w", DataType = (int)TensorProto.Types.DataType.Float, Dims = { 2 } };
            OnnxTensors.ReplaceData(tensor, [1f]);
            return Cli.Success;
        }
    }

    private static (int Code, string Out, string Err) RunWithInconsistentVerb(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        var context = new CliContext(stdout, stderr, CancellationToken.None);
        var root = Cli.BuildRoot(context);
        root.Subcommands.Add(new InconsistentCommand(context));
        int code = Cli.Run(root, context, args);
        return (code, stdout.ToString(), stderr.ToString());
    }

    private static string[] Lines(string text) => text.Split('\n', StringSplitOptions.RemoveEmptyEntries);

    /// <summary>The one JSON object on stdout (JsonDocument rejects anything after it, so a second object fails here).</summary>
    private static JsonElement OneObject(string stdout)
    {
        using var doc = JsonDocument.Parse(stdout);
        Assert.AreEqual(JsonValueKind.Object, doc.RootElement.ValueKind, stdout);
        return doc.RootElement.Clone();
    }

    private static void AssertError(JsonElement result, string command, string kind, int exitCode)
    {
        Assert.AreEqual(command, result.GetProperty("command").GetString());
        Assert.AreEqual("error", result.GetProperty("status").GetString());
        Assert.AreEqual(kind, result.GetProperty("errorKind").GetString());
        Assert.AreEqual(exitCode, result.GetProperty("exitCode").GetInt32());
        Assert.IsEmpty(result.GetProperty("outputs").EnumerateObject().ToList());
        Assert.AreEqual(0, result.GetProperty("failedGates").GetArrayLength());
        Assert.IsFalse(result.GetProperty("error").GetString()!.Contains('\n'), "one line");
    }

    [TestMethod]
    public void InternalInvariantFailure_Exits70AndSaysItIsABug()
    {
        var (code, stdout, err) = RunWithInconsistentVerb("inconsistent");

        Assert.AreEqual(70, code, err);
        string[] lines = Lines(err);
        Assert.HasCount(1, lines, err);
        StringAssert.StartsWith(lines[0], "merge-export inconsistent: internal error: ArgumentException: tensor 'w': 1 values given, expected 2.");
        StringAssert.EndsWith(lines[0].TrimEnd(), "— this is a bug; please report it (run with --verbose for the stack trace)");
        Assert.AreEqual("", stdout);
    }

    [TestMethod]
    public void InternalInvariantFailure_WithVerbose_PrintsTheStackTrace()
    {
        var (code, _, err) = RunWithInconsistentVerb("inconsistent", "--verbose");

        Assert.AreEqual(70, code, err);
        StringAssert.Contains(err, "this is a bug");
        StringAssert.Contains(err, "at OnnxLora.Core.Onnx.OnnxTensors.ReplaceData");
    }

    [TestMethod]
    public void InternalInvariantFailure_WithJson_PrintsOneInternalErrorObject()
    {
        var (code, stdout, err) = RunWithInconsistentVerb("inconsistent", "--json");

        Assert.AreEqual(70, code, err);
        var result = OneObject(stdout);
        AssertError(result, "inconsistent", "internal", 70);
        StringAssert.Contains(result.GetProperty("error").GetString(), "this is a bug");
        Assert.HasCount(1, Lines(err), "stderr keeps its one line with --json");
    }

    [TestMethod]
    public void BadInput_WithJson_PrintsOneBadInputErrorObject()
    {
        using var dir = new TempDir();
        string missing = dir.File("no-such-model");

        var (code, stdout, err) = CliHarness.Run("merge", "--model", missing, "--adapter", SampleModels.Adapter, "--out", dir.File("o"), "--json");

        Assert.AreEqual(2, code, err);
        var result = OneObject(stdout);
        AssertError(result, "merge", "bad-input", 2);
        StringAssert.Contains(result.GetProperty("error").GetString(), missing);
        string[] lines = Lines(err);
        Assert.HasCount(1, lines, err);
        Assert.AreEqual($"merge-export merge: error: {result.GetProperty("error").GetString()}", lines[0].TrimEnd());
        Assert.IsFalse(Directory.Exists(dir.File("o")));
    }

    [TestMethod]
    public void ParseError_WithJson_PrintsOneBadInputErrorObject()
    {
        using var dir = new TempDir();

        var (code, stdout, err) = CliHarness.Run("export", "--model", SampleModels.Model, "--mode", "base", "--opset", "16", "--out", dir.File("m.onnx"), "--json");

        Assert.AreEqual(2, code, err);
        var result = OneObject(stdout);
        AssertError(result, "export", "bad-input", 2);
        StringAssert.Contains(result.GetProperty("error").GetString(), "--opset");
        Assert.HasCount(1, Lines(err), err);
    }

    [TestMethod]
    public void ParseError_WithoutJson_LeavesStdoutEmpty()
    {
        var (code, stdout, err) = CliHarness.Run("export", "--no-such-option");

        Assert.AreEqual(2, code, err);
        Assert.AreEqual("", stdout);
        StringAssert.StartsWith(err, "merge-export: ");
    }

    [TestMethod]
    public void Cancelled_WithJson_Exits130WithOneCancelledObject()
    {
        using var dir = new TempDir();
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        var stdout = new StringWriter();
        var stderr = new StringWriter();

        int code = Cli.Run(["train", "--model", SampleModels.Model, "--data", Path.Combine(SampleModels.Model, "task.jsonl"),
            "--out", dir.File("adapter"), "--steps", "1", "--json"], stdout, stderr, cts.Token);

        Assert.AreEqual(130, code, stderr.ToString());
        AssertError(OneObject(stdout.ToString()), "train", "cancelled", 130);
        Assert.AreEqual("merge-export train: cancelled; no partial outputs were left.", stderr.ToString().Trim());
        Assert.IsFalse(Directory.Exists(dir.File("adapter")));
    }

    [TestMethod]
    public void KindOf_FollowsTheKindNotTheDotNetType()
    {
        Assert.AreEqual(ErrorKind.BadInput, CliCommand.KindOf(OnnxLoraException.InvalidOption("--rank", "0", "a positive integer")));
        Assert.AreEqual(ErrorKind.BadInput, CliCommand.KindOf(OnnxLoraException.NotFound("adapter folder", "/nope")));
        Assert.AreEqual(ErrorKind.Internal, CliCommand.KindOf(OnnxLoraException.Internal("merge-export", "a sample file was not embedded.")));
        Assert.AreEqual(ErrorKind.Cancelled, CliCommand.KindOf(new OperationCanceledException()));
        // The user's environment, as the OS reports it.
        Assert.AreEqual(ErrorKind.BadInput, CliCommand.KindOf(new UnauthorizedAccessException("/root/out: access denied")));
        Assert.AreEqual(ErrorKind.BadInput, CliCommand.KindOf(new IOException("No space left on device")));
        // Types the old mapping took for bad input: from our own code they are bugs.
        Assert.AreEqual(ErrorKind.Internal, CliCommand.KindOf(new ArgumentException("lengths differ")));
        Assert.AreEqual(ErrorKind.Internal, CliCommand.KindOf(new KeyNotFoundException("no such key")));
        Assert.AreEqual(ErrorKind.Internal, CliCommand.KindOf(new InvalidDataException("raw")));
        Assert.AreEqual(ErrorKind.Internal, CliCommand.KindOf(new NotSupportedException("raw")));
    }
}
