using System.Text.Json;
using OnnxLora.Models.Llama;
using OnnxLora.Models.Peft;
using static TorchSharp.torch;

namespace OnnxLora.MergeExport.Tests;

/// <summary>
/// <c>validate --data</c> on a causal LM: the perplexity it reports for merged, unmerged and base (ONNX Runtime) against
/// exp(mean token NLL) computed here in fp64 from the TorchSharp model's logits (the checkpoint, with and without the
/// adapter attached): neither the export nor validate's runner is on the reference side.
/// </summary>
[TestClass]
public sealed class PerplexityMetricTests
{
    [TestMethod]
    public void ValidateData_CausalLm_PerplexityMatchesAnEagerFp64Reference()
    {
        using var dir = new TempDir();
        var rng = new Random(17);
        long[][] rows = [.. Enumerable.Range(0, 6).Select(r => Enumerable.Range(0, 5 + (3 * r)).Select(_ => (long)rng.Next(4, 512)).ToArray())];
        string data = dir.File("lm.jsonl");
        File.WriteAllLines(data, rows.Select(ids => JsonSerializer.Serialize(new { input_ids = ids })));
        foreach (var (mode, adapter) in new[] { ("merged", true), ("unmerged", true), ("base", false) })
        {
            var args = new List<string> { "export", "--model", SampleModels.Model, "--mode", mode, "--out", dir.File(mode + ".onnx") };
            if (adapter)
            {
                args.AddRange(["--adapter", SampleModels.Adapter]);
            }
            var (code, _, err) = CliHarness.Run([.. args]);
            Assert.AreEqual(0, code, err);
        }

        var (vcode, vout, verr) = CliHarness.Run("validate", "--merged", dir.File("merged.onnx"), "--unmerged", dir.File("unmerged.onnx"), "--base", dir.File("base.onnx"),
            "--data", data, "--runs", "0", "--report", dir.File("report"));
        Assert.AreEqual(0, vcode, verr + vout);
        using var report = JsonDocument.Parse(File.ReadAllText(dir.File("report/validation.json")));
        var task = report.RootElement.GetProperty("taskMetrics");
        Assert.AreEqual("perplexity", task.GetProperty("metric").GetString());
        var reported = task.GetProperty("models").EnumerateArray().ToDictionary(m => m.GetProperty("role").GetString()!, m => m.GetProperty("value").GetDouble());

        double withAdapter = EagerPerplexity(rows, adapter: true);
        double without = EagerPerplexity(rows, adapter: false);
        Console.WriteLine($"perplexity: merged {reported["merged"]:R}, unmerged {reported["unmerged"]:R}, base {reported["base"]:R}; eager with adapter {withAdapter:R}, base {without:R}");
        Assert.IsLessThan(1e-4, Math.Abs(reported["merged"] / withAdapter - 1), "merged vs eager with the adapter");
        Assert.IsLessThan(1e-4, Math.Abs(reported["unmerged"] / withAdapter - 1), "unmerged vs eager with the adapter");
        Assert.IsLessThan(1e-4, Math.Abs(reported["base"] / without - 1), "base vs eager base");
        Assert.IsGreaterThan(1e-2, Math.Abs(withAdapter / without - 1), "the adapter must change the perplexity (else the check is vacuous)");
    }

    /// <summary>exp(Σ −log softmax(logits[t])[ids[t+1]] / Σ (n−1)) over the rows, in fp64, from the TorchSharp model's fp32 logits.</summary>
    private static double EagerPerplexity(long[][] rows, bool adapter)
    {
        using var model = LlamaForCausalLM.FromPretrained(SampleModels.Model);
        if (adapter)
        {
            PeftModelAdapter.Attach(model, SampleModels.Adapter);
        }
        model.eval();
        double nll = 0;
        long tokens = 0;
        using var noGrad = no_grad();
        foreach (long[] ids in rows)
        {
            using var scope = NewDisposeScope();
            var logits = model.forward(tensor(ids).unsqueeze(0), ones(1, ids.Length, ScalarType.Int64)).to(ScalarType.Float32).data<float>().ToArray();
            int vocab = logits.Length / ids.Length;
            for (int t = 0; t + 1 < ids.Length; t++)
            {
                double max = double.NegativeInfinity;
                for (int v = 0; v < vocab; v++)
                {
                    max = Math.Max(max, logits[(t * vocab) + v]);
                }
                double sum = 0;
                for (int v = 0; v < vocab; v++)
                {
                    sum += Math.Exp(logits[(t * vocab) + v] - max);
                }
                nll -= logits[(t * vocab) + (int)ids[t + 1]] - max - Math.Log(sum);
                tokens++;
            }
        }
        return Math.Exp(nll / tokens);
    }
}
