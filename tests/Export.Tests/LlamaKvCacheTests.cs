using Microsoft.ML.OnnxRuntime;
using OnnxLora.Core;
using OnnxLora.Core.Onnx;
using OnnxLora.Models;
using OnnxLora.Models.Llama;
using OnnxLora.Models.Onnx;

namespace OnnxLora.Export.Tests;

/// <summary>
/// The with-past export (<see cref="ExportOptions.UsePast"/>): prefill then single-token decode steps through the
/// key/value cache in ONNX Runtime give the logits of one full-sequence pass of the no-cache graph (itself checked
/// against the TorchSharp eager forward in <see cref="LlamaExportTests"/>), for a left-padded batch and GQA.
/// </summary>
[TestClass]
public sealed class LlamaKvCacheTests
{
    private const int Batch = 2, Prompt = 5, Steps = 4, Total = Prompt + Steps;

    /// <summary>Row 0 is left-padded by 2; row 1 is full.</summary>
    private static readonly long[] FullMask = [0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1];

    [TestMethod]
    [DataRow(OnnxExportMode.Base)]
    [DataRow(OnnxExportMode.Merged)]
    [DataRow(OnnxExportMode.Unmerged)]
    public void PrefillThenDecode_MatchesFullSequencePass_LeftPaddedGqa(OnnxExportMode mode)
    {
        using var model = TestModels.Llama(seed: 61);
        Assert.AreEqual(4, model.Config.NumAttentionHeads / model.Config.NumKeyValueHeads * 2, "GQA: 4 query heads over 2 kv heads");
        TestModels.InjectLora(model, TestModels.LlamaTargets);
        AssertCacheMatchesFullPass(model, new ExportOptions { Mode = mode }, 1e-4);
    }

    [TestMethod]
    public void PrefillThenDecode_MatchesFullSequencePass_Qwen2WithOneKvHead()
    {
        using var model = TestModels.Llama(TinyConfigs.Qwen2() with { NumKeyValueHeads = 1 }, seed: 62);
        TestModels.InjectLora(model, ["q_proj", "v_proj"]);
        AssertCacheMatchesFullPass(model, new ExportOptions { Mode = OnnxExportMode.Unmerged }, 1e-4);
    }

    [TestMethod]
    public void PrefillThenDecode_MatchesFullSequencePass_MistralSlidingWindow()
    {
        using var model = TestModels.Llama(TinyConfigs.Llama() with { ModelType = "mistral", SlidingWindow = 3 }, seed: 63);
        AssertCacheMatchesFullPass(model, new ExportOptions { Mode = OnnxExportMode.Base }, 1e-4);
    }

    [TestMethod]
    [DataRow(OnnxExportMode.Merged)]
    [DataRow(OnnxExportMode.Unmerged)]
    public void PrefillThenDecode_Fp16_MatchesFp16FullSequencePass(OnnxExportMode mode)
    {
        using var model = TestModels.Llama(seed: 64);
        TestModels.InjectLora(model, TestModels.LlamaTargets);
        // fp16 rounds differently along the two paths (cache concatenation vs one pass); logits are O(1).
        AssertCacheMatchesFullPass(model, new ExportOptions { Mode = mode, WeightType = DType.F16 }, 2e-2);
    }

    [TestMethod]
    public void WithPast_DeclaresOptimumAndGenAiNames()
    {
        using var model = TestModels.Llama();
        var proto = OnnxExporter.BuildModel(model, new ExportOptions { Mode = OnnxExportMode.Base, UsePast = true, WeightType = DType.F16 });

        CollectionAssert.AreEqual(
            new[] { "input_ids", "attention_mask", "position_ids", "past_key_values.0.key", "past_key_values.0.value", "past_key_values.1.key", "past_key_values.1.value" },
            proto.Graph.Input.Select(i => i.Name).ToArray());
        CollectionAssert.AreEqual(
            new[] { "logits", "present.0.key", "present.0.value", "present.1.key", "present.1.value" },
            proto.Graph.Output.Select(i => i.Name).ToArray());
        var past = proto.Graph.Input.Single(i => i.Name == "past_key_values.1.value").Type.TensorType;
        Assert.AreEqual((int)Onnx.TensorProto.Types.DataType.Float16, past.ElemType);
        CollectionAssert.AreEqual(new[] { "batch", "2", "past_sequence", "8" },
            past.Shape.Dim.Select(d => d.DimParam is { Length: > 0 } p ? p : d.DimValue.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray());
        Assert.AreEqual("total_sequence", proto.Graph.Input.Single(i => i.Name == "attention_mask").Type.TensorType.Shape.Dim[1].DimParam);
    }

    [TestMethod]
    public void WithPast_ForAnEncoder_IsBadInput()
    {
        using var model = TestModels.Bert();
        var e = BadInput.Throws(() => OnnxExporter.BuildModel(model, new ExportOptions { UsePast = true }));
        StringAssert.Contains(e.Message, "UsePast");
    }

    /// <summary>
    /// Prefill <see cref="Prompt"/> tokens, then <see cref="Steps"/> single-token steps, each feeding back the
    /// present keys/values; every logit of a real (non-padding) position must match the full pass.
    /// </summary>
    private static void AssertCacheMatchesFullPass(LlamaForCausalLM model, ExportOptions options, double tolerance)
    {
        long vocab = model.Config.VocabSize;
        long[] ids = TestModels.Ids(Batch, Total, vocab, 17);
        long[] positions = PositionsFromMask(FullMask, Batch, Total);
        using var full = OrtRunner.FromBytes(OnnxFile.ToBytes(OnnxExporter.BuildModel(model, options with { PositionIdsInput = true })));
        float[] expected = full.Run("logits", ("input_ids", ids, [Batch, Total]), ("attention_mask", FullMask, [Batch, Total]), ("position_ids", positions, [Batch, Total])).Data;

        using var cache = new CacheLoop(OnnxFile.ToBytes(OnnxExporter.BuildModel(model, options with { UsePast = true })), model.Config, options.WeightType);
        float[] prefill = cache.Step(Columns(ids, 0, Prompt), Columns(FullMask, 0, Prompt), Columns(positions, 0, Prompt), Prompt);
        double worst = 0;
        for (int b = 0; b < Batch; b++)
        {
            for (int s = 0; s < Prompt; s++)
            {
                if (FullMask[(b * Total) + s] == 1)
                {
                    worst = Math.Max(worst, Reference.MaxAbsDiff(Row(prefill, b, s, Prompt, vocab), Row(expected, b, s, Total, vocab)));
                }
            }
        }
        for (int t = Prompt; t < Total; t++)
        {
            float[] step = cache.Step(Columns(ids, t, t + 1), Columns(FullMask, 0, t + 1), Columns(positions, t, t + 1), 1);
            for (int b = 0; b < Batch; b++)
            {
                worst = Math.Max(worst, Reference.MaxAbsDiff(Row(step, b, 0, 1, vocab), Row(expected, b, t, Total, vocab)));
            }
        }
        Assert.IsLessThan(tolerance, worst, $"max |cache − full| over every real position ({options.Mode}, {options.WeightType})");
    }

    /// <summary>Hugging Face's and ONNX Runtime GenAI's position ids under padding: cumsum(mask) − 1, 0 at padding.</summary>
    private static long[] PositionsFromMask(long[] mask, int batch, int length)
    {
        var positions = new long[mask.Length];
        for (int b = 0; b < batch; b++)
        {
            long seen = 0;
            for (int s = 0; s < length; s++)
            {
                seen += mask[(b * length) + s];
                positions[(b * length) + s] = Math.Max(0, seen - 1);
            }
        }
        return positions;
    }

    /// <summary>Columns [from, to) of a [Batch, Total] matrix.</summary>
    private static long[] Columns(long[] m, int from, int to) =>
        [.. Enumerable.Range(0, Batch).SelectMany(b => m.Skip((b * Total) + from).Take(to - from))];

    private static ReadOnlySpan<float> Row(float[] logits, int b, int s, int length, long vocab) =>
        logits.AsSpan(checked((int)(((b * length) + s) * vocab)), (int)vocab);

    /// <summary>A plain ONNX Runtime loop over the with-past graph: feeds each step's present as the next past.</summary>
    private sealed class CacheLoop : IDisposable
    {
        private readonly InferenceSession _session;
        private readonly int _layers;
        private OrtValue[] _past;

        public CacheLoop(byte[] model, Core.HuggingFace.LlamaConfig config, DType weightType)
        {
            using var options = new SessionOptions { LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR };
            _session = new InferenceSession(model, options);
            _layers = config.NumHiddenLayers;
            long[] emptyShape = [Batch, config.NumKeyValueHeads, 0, config.HeadDim];
            _past = [.. Enumerable.Range(0, 2 * _layers).Select(_ => weightType == DType.F16
                ? OrtValue.CreateTensorValueFromMemory(Array.Empty<Float16>(), emptyShape)
                : OrtValue.CreateTensorValueFromMemory(Array.Empty<float>(), emptyShape))];
        }

        public float[] Step(long[] ids, long[] mask, long[] positions, int sequence)
        {
            using var idsValue = OrtValue.CreateTensorValueFromMemory(ids, [Batch, sequence]);
            using var maskValue = OrtValue.CreateTensorValueFromMemory(mask, [Batch, mask.Length / Batch]);
            using var positionsValue = OrtValue.CreateTensorValueFromMemory(positions, [Batch, sequence]);
            var feeds = new Dictionary<string, OrtValue> { ["input_ids"] = idsValue, ["attention_mask"] = maskValue, ["position_ids"] = positionsValue };
            var outputs = new List<string> { "logits" };
            for (int i = 0; i < _layers; i++)
            {
                feeds[LlamaForCausalLM.PastKeyName(i)] = _past[2 * i];
                feeds[LlamaForCausalLM.PastValueName(i)] = _past[(2 * i) + 1];
                outputs.Add(LlamaForCausalLM.PresentKeyName(i));
                outputs.Add(LlamaForCausalLM.PresentValueName(i));
            }
            using var runOptions = new RunOptions();
            var results = _session.Run(runOptions, feeds, outputs);
            float[] logits = results[0].GetTensorDataAsSpan<float>().ToArray();
            results[0].Dispose();
            foreach (var old in _past)
            {
                old.Dispose();
            }
            _past = [.. results.Skip(1)];
            return logits;
        }

        public void Dispose()
        {
            foreach (var value in _past)
            {
                value.Dispose();
            }
            _session.Dispose();
        }
    }
}
