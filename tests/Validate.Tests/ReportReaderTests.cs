using System.Text.Json.Nodes;

namespace OnnxLora.Validate.Tests;

[TestClass]
public sealed class ReportReaderTests
{
    private static string Write(TestFiles f, string json, string name = "validation.json")
    {
        string path = f.File(name);
        File.WriteAllText(path, json);
        return path;
    }

    /// <summary>The known report's JSON with one change made through the JSON tree.</summary>
    private static string Edited(Action<JsonObject> edit)
    {
        var root = JsonNode.Parse(ReportWriter.ToJson(ReportWriterTests.KnownReport()))!.AsObject();
        edit(root);
        return root.ToJsonString();
    }

    private static string LoadError(string json)
    {
        using var f = new TestFiles();
        string path = Write(f, json);
        var e = BadInput.Throws(() => ValidationReport.Load(path));
        Assert.DoesNotContain("\n", e.Message, "one line");
        StringAssert.StartsWith(e.Message, path + ": ", "names the file first");
        return e.Message[(path.Length + 2)..];
    }

    [TestMethod]
    public void Load_KnownReport_RoundTripsToTheSameJson()
    {
        using var f = new TestFiles();
        string json = ReportWriter.ToJson(ReportWriterTests.KnownReport());

        var read = ValidationReport.Load(Write(f, json));

        Assert.AreEqual(json, ReportWriter.ToJson(read));
        Assert.AreEqual(ReportWriterTests.KnownReport().CreatedUtc, read.CreatedUtc);
        Assert.AreEqual(TimeSpan.FromSeconds(1.5), read.Options.Duration);
        Assert.AreEqual(7L, read.Options.Dims["z_dim"]);
        Assert.AreEqual(new string('a', 64), read.Models[0].ContentSha256);
        Assert.AreEqual(LatencyVerdict.Regression, read.Baseline!.Models[0].Verdict);
        Assert.IsTrue(double.IsNaN(read.Latency!.Models[0].SamplesMs[1]), "null samples read back as NaN");
    }

    [TestMethod]
    public void Load_ReportWrittenBeforeActiveAdapter_ReadsItAsNull_AndAnAdapterRoleRoundTrips()
    {
        using var f = new TestFiles();
        var known = ReportWriterTests.KnownReport();
        string json = ReportWriter.ToJson(known);
        string older = json.Replace(",\n      \"activeAdapter\": null", "", StringComparison.Ordinal);
        Assert.AreNotEqual(json, older, "the field must be there to be removed");
        Assert.IsNull(ValidationReport.Load(Write(f, older)).Models[0].ActiveAdapter);

        var withAdapter = known with { Models = [.. known.Models.Select((m, i) => i == 1 ? m with { Role = ModelRole.Adapter, ActiveAdapter = "/x/a.onnx_adapter" } : m)] };
        var read = ValidationReport.Load(Write(f, ReportWriter.ToJson(withAdapter)));
        Assert.AreEqual(ModelRole.Adapter, read.Models[1].Role);
        Assert.AreEqual("/x/a.onnx_adapter", read.Models[1].ActiveAdapter);
    }

    [TestMethod]
    public void Load_ReportWrittenBeforeRunsPerSample_ReadsOneRunPerSample()
    {
        using var f = new TestFiles();
        Assert.AreEqual(7, ValidationReport.Load(Write(f, ReportWriter.ToJson(ReportWriterTests.KnownReport()))).Latency!.RunsPerSample);
        string older = Edited(r => Assert.IsTrue(r["latency"]!.AsObject().Remove("runsPerSample"), "the field must be there to be removed"));

        Assert.AreEqual(1, ValidationReport.Load(Write(f, older)).Latency!.RunsPerSample);
    }

    [TestMethod]
    public void Load_ReportWrittenBeforeCpuMemArena_ReadsArenaOn()
    {
        using var f = new TestFiles();
        var known = ReportWriterTests.KnownReport();
        var off = known with { Provider = known.Provider with { Session = known.Provider.Session with { CpuMemArena = false } } };
        Assert.IsFalse(ValidationReport.Load(Write(f, ReportWriter.ToJson(off))).Provider.Session.CpuMemArena);
        string older = Edited(r => Assert.IsTrue(r["provider"]!["session"]!.AsObject().Remove("cpuMemArena"), "the field must be there to be removed"));

        Assert.IsTrue(ValidationReport.Load(Write(f, older)).Provider.Session.CpuMemArena);
    }

    [TestMethod]
    public void Load_SchemaVersionTwo_ReadsWithoutDecodeAndWithTheDecodeDefaults()
    {
        using var f = new TestFiles();
        string older = Edited(r =>
        {
            r["schema"] = "onnxlora.validation/2";
            Assert.IsTrue(r.Remove("decode"), "the field must be there to be removed");
            var options = r["options"]!.AsObject();
            Assert.IsTrue(options.Remove("decodeTokens") && options.Remove("promptTokens") && options.Remove("decodeRuns"));
        });

        var read = ValidationReport.Load(Write(f, older));

        Assert.IsNull(read.Decode);
        Assert.AreEqual(0, read.Options.DecodeTokens);
        Assert.AreEqual(ValidationOptions.Default.PromptTokens, read.Options.PromptTokens);
        Assert.AreEqual(ValidationOptions.Default.DecodeRuns, read.Options.DecodeRuns);
        Assert.AreEqual(ReportWriterTests.KnownReport().Latency!.Models[0].Stats, read.Latency!.Models[0].Stats, "everything else reads as in /3");
        StringAssert.Contains(ReportWriter.ToJson(read), "\"schema\": \"onnxlora.validation/3\"", "written back in the current schema");
    }

    [TestMethod]
    public void Load_KnownReport_ReadsBackTheDecodeSection()
    {
        using var f = new TestFiles();
        var known = ReportWriterTests.KnownReport();

        var read = ValidationReport.Load(Write(f, ReportWriter.ToJson(known))).Decode!;

        Assert.AreEqual(known.Decode!.PromptTokens, read.PromptTokens);
        CollectionAssert.AreEqual(known.Decode.PromptIds.ToArray(), read.PromptIds.ToArray());
        CollectionAssert.AreEqual(known.Decode.Models[1].TokenIds.ToArray(), read.Models[1].TokenIds.ToArray());
        CollectionAssert.AreEqual(known.Decode.Models[0].StepSamplesMs.ToArray(), read.Models[0].StepSamplesMs.ToArray());
        Assert.AreEqual(known.Decode.Models[0].PerToken, read.Models[0].PerToken);
        Assert.AreEqual(2, read.Comparisons[0].FirstDifferentStep);
        Assert.AreEqual("merged vs unmerged (decode)", read.Comparisons[0].Name);
        Assert.IsTrue(double.IsNaN(read.Models[1].PerToken.MeanMs) && double.IsPositiveInfinity(known.Decode.Models[1].TokensPerSecond) && double.IsNaN(read.Models[1].TokensPerSecond),
            "non-finite numbers are written as null and read back as NaN");
    }

    [TestMethod]
    public void Load_ValidatorRun_ReadsBackEveryModelAndSample()
    {
        using var f = new TestFiles();
        var report = Validator.Run(new ValidationRequest(f.Merged(), f.Unmerged()) { BasePath = f.Base() }, TestFiles.Cpu with { Runs = 3 });

        var read = ValidationReport.Load(Write(f, ReportWriter.ToJson(report)));

        Assert.AreEqual(ReportWriter.ToJson(report), ReportWriter.ToJson(read));
        CollectionAssert.AreEqual(report.Latency!.Models[2].SamplesMs.ToArray(), read.Latency!.Models[2].SamplesMs.ToArray());
        Assert.AreEqual(64, read.Models[0].ContentSha256.Length);
    }

    [TestMethod]
    public void Load_TruncatedFile_NamesTheFieldWhereItBreaks()
    {
        string json = ReportWriter.ToJson(ReportWriterTests.KnownReport());
        int cut = json.IndexOf("\"samplesMs\"", StringComparison.Ordinal) + 30;

        string message = LoadError(json[..cut]);

        StringAssert.StartsWith(message, "field latency.models[0].samplesMs");
        StringAssert.Contains(message, "truncated or malformed at line ");
        StringAssert.EndsWith(message, "expected a complete JSON validation report.");
    }

    [TestMethod]
    public void Load_ForeignJson_NamesTheSchemaField()
    {
        StringAssert.StartsWith(LoadError("{\"name\": \"model\", \"version\": 3}"), "field schema: found none, expected \"onnxlora.validation/3\" (this is not an OnnxLora validation report)");
        StringAssert.StartsWith(LoadError("[1, 2, 3]"), "top level: found a JSON array, expected an object");
        StringAssert.StartsWith(LoadError("{\"schema\": \"other.tool/2\"}"), "field schema: found \"other.tool/2\", expected");
        StringAssert.StartsWith(LoadError("not json at all"), "top level: found JSON that is truncated or malformed at line 1");
        StringAssert.StartsWith(LoadError(""), "found an empty file, expected a JSON validation report");
    }

    [TestMethod]
    public void Load_SchemaVersionOne_IsRefusedSayingWhy()
    {
        string message = LoadError(Edited(r => r["schema"] = "onnxlora.validation/1"));

        StringAssert.StartsWith(message, "field schema: found \"onnxlora.validation/1\", expected \"onnxlora.validation/3\"");
        StringAssert.Contains(message, "lack the machine fingerprint and model hashes");
    }

    [TestMethod]
    public void Load_FieldOfTheWrongType_NamesTheFieldAndTheValue()
    {
        string message = LoadError(Edited(r => r["latency"]!["models"]![0]!["p50Ms"] = "fast"));

        Assert.AreEqual("field latency.models[0].p50Ms: found \"fast\", expected a number.", message);
    }

    [TestMethod]
    public void Load_UnknownEnumValue_NamesTheFieldAndTheChoices()
    {
        string message = LoadError(Edited(r => r["models"]![1]!["role"] = "candidate"));

        StringAssert.StartsWith(message, "field models[1].role: found \"candidate\", expected one of \"merged\", \"unmerged\", \"base\", \"eager\"");
    }

    [TestMethod]
    public void Load_MissingField_NamesIt()
    {
        Assert.AreEqual("field machine: found none, expected a value (every field of onnxlora.validation/3 is present; null where it does not apply).",
            LoadError(Edited(r => r.Remove("machine"))));
        StringAssert.StartsWith(LoadError(Edited(r => r["latency"]!["models"]![1]!.AsObject().Remove("samplesMs"))), "field latency.models[1].samplesMs: found none");
    }

    [TestMethod]
    public void Load_NullWhereNotAllowed_NamesTheField()
    {
        StringAssert.StartsWith(LoadError(Edited(r => r["toolVersion"] = null)), "field toolVersion: found null, expected a value (null is not allowed here)");
    }

    [TestMethod]
    public void Load_UnknownFieldsAreIgnored()
    {
        using var f = new TestFiles();
        string path = Write(f, Edited(r => r["addedLater"] = new JsonObject { ["x"] = 1 }));

        Assert.AreEqual(ValidationStatus.GateFailed, ValidationReport.Load(path).Status);
    }

    [TestMethod]
    public void Load_MissingFileOrFolder_IsBadInput()
    {
        using var f = new TestFiles();

        StringAssert.Contains(BadInput.Throws(() => ValidationReport.Load(f.File("nope.json"))).Message, "validation report not found");
        StringAssert.Contains(BadInput.Throws(() => ValidationReport.Load(f.Dir)).Message, "a folder, not a validation report file");
    }
}
