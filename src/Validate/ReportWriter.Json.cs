using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using OnnxLora.Validate.Internals;

namespace OnnxLora.Validate;

public static partial class ReportWriter
{
    /// <summary>
    /// The JSON report. Field by field as docs/report-schema.md documents; every documented field is always
    /// present (null when it does not apply); non-finite numbers are written as null.
    /// </summary>
    public static string ToJson(ValidationReport report)
    {
        ArgumentNullException.ThrowIfNull(report);
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            w.WriteString("schema", ValidationReport.SchemaId);
            w.WriteString("status", report.Status == ValidationStatus.Pass ? "pass" : "gateFailed");
            w.WriteString("createdUtc", report.CreatedUtc.UtcDateTime.ToString("O", System.Globalization.CultureInfo.InvariantCulture));
            w.WriteString("toolVersion", report.ToolVersion);
            w.WriteString("onnxRuntimeVersion", report.OnnxRuntimeVersion);
            WriteOptions(w, report.Options);
            WriteProvider(w, report.Provider);
            WriteInputs(w, report.Inputs);
            w.WriteStartArray("models");
            foreach (var m in report.Models)
            {
                WriteModel(w, m);
            }
            w.WriteEndArray();
            w.WriteStartArray("comparisons");
            foreach (var c in report.Comparisons)
            {
                WriteComparison(w, c);
            }
            w.WriteEndArray();
            WriteLatency(w, report.Latency);
            Number(w, "peakMemoryBytes", report.PeakMemoryBytes);
            w.WriteStartArray("gates");
            foreach (var g in report.Gates)
            {
                w.WriteStartObject();
                w.WriteString("gate", g.Gate);
                w.WriteBoolean("enabled", g.Enabled);
                w.WriteBoolean("passed", g.Passed);
                w.WriteString("limit", g.Limit);
                w.WriteString("detail", g.Detail);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteStartArray("failures");
            foreach (var f in report.Failures)
            {
                w.WriteStartObject();
                w.WriteString("gate", f.Gate);
                w.WriteString("comparison", f.Comparison);
                w.WriteString("output", f.Output);
                Number(w, "value", f.Value);
                Number(w, "limit", f.Limit);
                w.WriteString("message", f.Message);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteStartArray("warnings");
            foreach (string s in report.Warnings)
            {
                w.WriteStringValue(s);
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(buffer.ToArray()) + "\n";
    }

    private static void WriteOptions(Utf8JsonWriter w, ValidationOptions o)
    {
        w.WriteStartObject("options");
        w.WriteString("device", o.Device.ToString().ToLowerInvariant());
        w.WriteNumber("deviceId", o.DeviceId);
        w.WriteBoolean("allowCpuFallback", o.AllowCpuFallback);
        w.WriteNumber("batch", o.Batch);
        w.WriteNumber("sequence", o.Sequence);
        w.WriteStartArray("dims");
        foreach (var (name, value) in o.Dims.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            w.WriteStartObject();
            w.WriteString("name", name);
            w.WriteNumber("value", value);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteString("padding", o.Padding.ToString().ToLowerInvariant());
        w.WriteNumber("padTokenId", o.PadTokenId);
        w.WriteNumber("seed", o.Seed);
        Number(w, "vocabSize", o.VocabSize);
        Strings(w, "inputFiles", o.InputFiles);
        w.WriteNumber("warmup", o.Warmup);
        w.WriteNumber("runs", o.Runs);
        Number(w, "durationSeconds", o.Duration?.TotalSeconds);
        Number(w, "atol", o.Atol);
        Number(w, "rtol", o.Rtol);
        Number(w, "minTop1", o.MinTop1);
        Number(w, "maxLatencyRatio", o.MaxLatencyRatio);
        w.WriteNumber("intraOpThreads", o.IntraOpThreads);
        w.WriteNumber("interOpThreads", o.InterOpThreads);
        w.WriteString("graphOptimization", o.GraphOptimization.ToString().ToLowerInvariant());
        w.WriteString("logitsOutput", o.LogitsOutput);
        w.WriteEndObject();
    }

    private static void WriteProvider(Utf8JsonWriter w, ProviderReport p)
    {
        w.WriteStartObject("provider");
        w.WriteString("requested", p.Requested.ToString().ToLowerInvariant());
        w.WriteNumber("deviceId", p.DeviceId);
        w.WriteBoolean("allowCpuFallback", p.AllowCpuFallback);
        w.WriteString("used", p.Used);
        w.WriteString("fallbackReason", p.FallbackReason);
        w.WriteStartObject("session");
        w.WriteNumber("intraOpThreads", p.Session.IntraOpThreads);
        w.WriteNumber("interOpThreads", p.Session.InterOpThreads);
        w.WriteString("graphOptimization", p.Session.GraphOptimization.ToString().ToLowerInvariant());
        w.WriteString("executionMode", p.Session.ExecutionMode);
        w.WriteEndObject();
        w.WriteEndObject();
    }

    private static void WriteInputs(Utf8JsonWriter w, InputsReport inputs)
    {
        w.WriteStartObject("inputs");
        w.WriteBoolean("generated", inputs.Generated);
        Number(w, "vocabSize", inputs.VocabSize);
        w.WriteString("vocabSource", inputs.VocabSource);
        w.WriteStartArray("tensors");
        foreach (var t in inputs.Tensors)
        {
            w.WriteStartObject();
            w.WriteString("name", t.Name);
            w.WriteString("elementType", t.ElementType.ReportName());
            Longs(w, "shape", t.Shape);
            w.WriteString("source", t.Source);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteEndObject();
    }

    private static void WriteModel(Utf8JsonWriter w, ModelReport m)
    {
        w.WriteStartObject();
        w.WriteString("role", m.Role.ToString().ToLowerInvariant());
        w.WriteString("path", m.Path);
        w.WriteNumber("fileBytes", m.FileBytes);
        w.WriteNumber("externalDataBytes", m.ExternalDataBytes);
        w.WriteNumber("totalBytes", m.TotalBytes);
        Strings(w, "externalDataFiles", m.ExternalDataFiles);
        Number(w, "sessionCreateMs", m.SessionCreateMs);
        Number(w, "rssDeltaBytes", m.RssDeltaBytes);
        Signatures(w, "inputs", m.Inputs);
        Signatures(w, "outputs", m.Outputs);
        w.WriteEndObject();
    }

    private static void WriteComparison(Utf8JsonWriter w, ComparisonReport c)
    {
        w.WriteStartObject();
        w.WriteString("name", c.Name);
        w.WriteString("actual", c.Actual.ToString().ToLowerInvariant());
        w.WriteString("reference", c.Reference.ToString().ToLowerInvariant());
        w.WriteBoolean("gated", c.Gated);
        w.WriteStartArray("outputs");
        foreach (var o in c.Outputs)
        {
            w.WriteStartObject();
            w.WriteString("name", o.Name);
            Longs(w, "shape", o.Shape);
            w.WriteString("actualType", o.ActualType.ReportName());
            w.WriteString("referenceType", o.ReferenceType.ReportName());
            w.WriteNumber("elements", o.Elements);
            Number(w, "maxAbsError", o.MaxAbsError);
            Number(w, "maxRelError", o.MaxRelError);
            Number(w, "rmsError", o.RmsError);
            Number(w, "cosineSimilarity", o.CosineSimilarity);
            Number(w, "referenceMaxAbs", o.ReferenceMaxAbs);
            w.WriteNumber("beyondTolerance", o.BeyondTolerance);
            w.WriteNumber("nonFiniteActual", o.NonFiniteActual);
            w.WriteNumber("nonFiniteReference", o.NonFiniteReference);
            if (o.WorstIndex is null)
            {
                w.WriteNull("worstIndex");
            }
            else
            {
                Longs(w, "worstIndex", o.WorstIndex);
            }
            Number(w, "worstActual", o.WorstActual);
            Number(w, "worstReference", o.WorstReference);
            Number(w, "top1Agreement", o.Top1Agreement);
            Number(w, "top1Positions", o.Top1Positions);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteEndObject();
    }

    private static void WriteLatency(Utf8JsonWriter w, LatencyReport? l)
    {
        if (l is null)
        {
            w.WriteNull("latency");
            return;
        }
        w.WriteStartObject("latency");
        w.WriteString("mode", l.Mode);
        w.WriteNumber("warmup", l.Warmup);
        w.WriteNumber("rounds", l.Rounds);
        Number(w, "durationSeconds", l.DurationSeconds);
        w.WriteNumber("batchSize", l.BatchSize);
        w.WriteNumber("tokensPerRun", l.TokensPerRun);
        w.WriteString("binding", l.Binding);
        w.WriteStartArray("models");
        foreach (var m in l.Models)
        {
            w.WriteStartObject();
            w.WriteString("role", m.Role.ToString().ToLowerInvariant());
            w.WriteNumber("count", m.Stats.Count);
            Number(w, "meanMs", m.Stats.MeanMs);
            Number(w, "stdMs", m.Stats.StdMs);
            Number(w, "minMs", m.Stats.MinMs);
            Number(w, "p50Ms", m.Stats.P50Ms);
            Number(w, "p90Ms", m.Stats.P90Ms);
            Number(w, "p95Ms", m.Stats.P95Ms);
            Number(w, "p99Ms", m.Stats.P99Ms);
            Number(w, "maxMs", m.Stats.MaxMs);
            Number(w, "sequencesPerSecond", m.SequencesPerSecond);
            Number(w, "tokensPerSecond", m.TokensPerSecond);
            w.WriteStartArray("samplesMs");
            foreach (double s in m.SamplesMs)
            {
                NumberValue(w, s);
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteStartArray("ratios");
        foreach (var r in l.Ratios)
        {
            w.WriteStartObject();
            w.WriteString("name", r.Name);
            w.WriteString("numerator", r.Numerator.ToString().ToLowerInvariant());
            w.WriteString("denominator", r.Denominator.ToString().ToLowerInvariant());
            w.WriteNumber("pairs", r.Pairs);
            Number(w, "median", r.Median);
            Number(w, "mean", r.Mean);
            Number(w, "p10", r.P10);
            Number(w, "p90", r.P90);
            Number(w, "q25", r.Q25);
            Number(w, "q75", r.Q75);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteEndObject();
    }

    private static void Signatures(Utf8JsonWriter w, string name, IReadOnlyList<TensorSignature> signatures)
    {
        w.WriteStartArray(name);
        foreach (var s in signatures)
        {
            w.WriteStartObject();
            w.WriteString("name", s.Name);
            w.WriteString("elementType", s.ElementType.ReportName());
            Strings(w, "dims", s.Dims);
            w.WriteEndObject();
        }
        w.WriteEndArray();
    }

    private static void Strings(Utf8JsonWriter w, string name, IEnumerable<string> values)
    {
        w.WriteStartArray(name);
        foreach (string v in values)
        {
            w.WriteStringValue(v);
        }
        w.WriteEndArray();
    }

    private static void Longs(Utf8JsonWriter w, string name, IEnumerable<long> values)
    {
        w.WriteStartArray(name);
        foreach (long v in values)
        {
            w.WriteNumberValue(v);
        }
        w.WriteEndArray();
    }

    private static void Number(Utf8JsonWriter w, string name, double? value)
    {
        if (value is double v && double.IsFinite(v))
        {
            w.WriteNumber(name, v);
        }
        else
        {
            w.WriteNull(name);
        }
    }

    private static void Number(Utf8JsonWriter w, string name, long? value)
    {
        if (value is long v)
        {
            w.WriteNumber(name, v);
        }
        else
        {
            w.WriteNull(name);
        }
    }

    private static void NumberValue(Utf8JsonWriter w, double v)
    {
        if (double.IsFinite(v))
        {
            w.WriteNumberValue(v);
        }
        else
        {
            w.WriteNullValue();
        }
    }
}
