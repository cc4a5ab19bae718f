using System.Text.Json;
using OnnxLora.Core.Safetensors;

namespace OnnxLora.MergeExport.Tests;

/// <summary>
/// What <c>run</c> and <c>export</c> ship, checked by value: an rsLoRA + DoRA adapter written by hand in PEFT's format
/// is merged into the sample checkpoint by an fp64 reference from PEFT's formulas (<see cref="PeftReference"/>), that
/// checkpoint is exported base-mode, and its logits in ONNX Runtime are what <c>run</c>'s merged.onnx (merged
/// checkpoint path), <c>export --mode merged</c> and <c>export --mode unmerged</c> (adapter-attach path) must give.
/// Dropping use_rslora (scale α/r = 2 instead of α/√r = 4) or use_dora anywhere on a path moves the logits by far more
/// than the tolerance.
/// </summary>
[TestClass]
public sealed class PipelineNumericsTests
{
    /// <summary>Absolute, on logits of magnitude ~10 from an fp32 model: rounding-order differences only.</summary>
    private const double LogitTolerance = 1e-4;

    private static readonly string[] Targets = ["q_proj", "v_proj", "down_proj"];

    [TestMethod]
    public void RunAndExport_RsLoraDoraAdapter_MatchAModelExportedFromTheIndependentlyMergedCheckpoint()
    {
        using var dir = new TempDir();
        var adapter = HandAdapter.Write(dir.File("adapter"), Targets, rank: 4, alpha: 8, rsLora: true, dora: true, seed: 31);
        Assert.AreEqual(4.0, adapter.Scaling, "rsLoRA: alpha/√r");
        var sample = ReferenceCheckpoint.SampleTensors();
        var exact = new Dictionary<string, double[]>(StringComparer.Ordinal);
        var sizes = new Dictionary<string, double[]>(StringComparer.Ordinal);
        double rsLoraEffect = 0, doraEffect = 0;
        foreach (var m in adapter.Modules)
        {
            float[] w = sample[m.Path + ".weight"];
            var delta = PeftReference.Delta(m.A, m.B, adapter.Rank, m.InFeatures, m.OutFeatures, adapter.Scaling);
            exact[m.Path + ".weight"] = PeftReference.Dora(w, delta, m.Magnitude!, m.OutFeatures, m.InFeatures);
            // The terms' size for the rounding bound: m/‖W + ΔW‖ · (|W| + |ΔW|), row by row.
            sizes[m.Path + ".weight"] = PeftReference.DoraTermSize(w, delta, m.Magnitude!, m.OutFeatures, m.InFeatures);
            var plainScale = PeftReference.Dora(w, PeftReference.Delta(m.A, m.B, adapter.Rank, m.InFeatures, m.OutFeatures, 8.0 / 4), m.Magnitude!, m.OutFeatures, m.InFeatures);
            rsLoraEffect = Math.Max(rsLoraEffect, PeftReference.Compare(PeftReference.ToFloats(plainScale), exact[m.Path + ".weight"]).MaxAbs);
            doraEffect = Math.Max(doraEffect, PeftReference.Compare(PeftReference.ToFloats(w.Select((x, i) => x + delta[i]).ToArray()), exact[m.Path + ".weight"]).MaxAbs);
        }
        Assert.AreEqual(3 * 4, exact.Count, "q_proj, v_proj and down_proj of 4 layers");
        Assert.IsGreaterThan(1e-2, rsLoraEffect, "rsLoRA's scale must matter to the weights");
        Assert.IsGreaterThan(1e-2, doraEffect, "DoRA's magnitude must matter to the weights");
        string reference = ReferenceCheckpoint.Write(dir.File("reference"), exact.ToDictionary(e => e.Key, e => PeftReference.ToFloats(e.Value)));

        Ok("export", "--model", reference, "--mode", "base", "--out", dir.File("reference.onnx"));
        Ok("export", "--model", SampleModels.Model, "--mode", "base", "--out", dir.File("base.onnx"));
        var run = Json(Ok("run", "--model", SampleModels.Model, "--adapter", adapter.Directory, "--out", dir.File("run"),
            "--runs", "0", "--warmup", "0", "--seq", "16", "--device", "cpu", "--json"));
        Ok("export", "--model", SampleModels.Model, "--adapter", adapter.Directory, "--mode", "merged", "--out", dir.File("export-merged.onnx"));
        Ok("export", "--model", SampleModels.Model, "--adapter", adapter.Directory, "--mode", "unmerged", "--out", dir.File("export-unmerged.onnx"));

        Assert.AreEqual("passed", run.GetProperty("status").GetString());
        using (var merged = SafetensorsFile.Open(Path.Combine(run.GetProperty("outputs").GetProperty("mergedCheckpoint").GetString()!, "model.safetensors")))
        {
            foreach (var (name, values) in exact)
            {
                PeftReference.AssertClose(PeftReference.Floats(merged.GetBytes(merged.Get(name))), values, sizes[name], 4, "run's merged checkpoint " + name);
            }
        }
        float[] expected = OnnxLogits.Run(dir.File("reference.onnx"));
        Assert.IsGreaterThan(0.5, OnnxLogits.MaxAbsDiff(OnnxLogits.Run(dir.File("base.onnx")), expected), "the adapter must change the logits, or this test proves nothing");
        foreach (var (what, path) in new[]
        {
            ("run's merged.onnx", run.GetProperty("outputs").GetProperty("merged").GetString()!),
            ("run's unmerged.onnx", run.GetProperty("outputs").GetProperty("unmerged").GetString()!),
            ("export --mode merged", dir.File("export-merged.onnx")),
            ("export --mode unmerged", dir.File("export-unmerged.onnx")),
        })
        {
            double diff = OnnxLogits.MaxAbsDiff(OnnxLogits.Run(path), expected);
            Console.WriteLine($"{what}: max |logits − reference logits| = {diff:G3}");
            Assert.IsLessThan(LogitTolerance, diff, $"{what}: max |logits − logits of the independently merged checkpoint| = {diff:G3}");
        }
    }

    private static string Ok(params string[] args)
    {
        var (code, stdout, stderr) = CliHarness.Run(args);
        Assert.AreEqual(0, code, $"merge-export {string.Join(' ', args)}: {stderr}{stdout}");
        return stdout;
    }

    private static JsonElement Json(string text)
    {
        using var doc = JsonDocument.Parse(text);
        return doc.RootElement.Clone();
    }
}
