using OnnxLora.Core;
using OnnxLora.Core.Peft;
using OnnxLora.Core.Safetensors;
using static OnnxLora.Merge.Tests.TestData;

namespace OnnxLora.Merge.Tests;

/// <summary>What PEFT does around the combination itself: DoRA order, lora_bias, fan_in_fan_out by layer type, modules_to_save.</summary>
[TestClass]
public sealed class PeftMergeRulesTests
{
    private const string M = "model.layers.0.self_attn.q_proj";
    private const double Tol = 1e-6;

    private static Dictionary<string, TensorSpec> Target(params (string Name, long[] Shape)[] tensors) =>
        tensors.ToDictionary(t => t.Name, t => new TensorSpec(t.Name, DType.F32, t.Shape));

    /// <summary>m ⊙ V/‖V‖ with the norm over each row of V [out, in] (DoRA, written from the paper's formula).</summary>
    private static double[] Dora(double[] v, float[] magnitude, int outF, int inF)
    {
        var r = new double[v.Length];
        for (int o = 0; o < outF; o++)
        {
            double norm = Math.Sqrt(Enumerable.Range(0, inF).Sum(i => v[o * inF + i] * v[o * inF + i]));
            for (int i = 0; i < inF; i++)
            {
                r[o * inF + i] = magnitude[o] * v[o * inF + i] / norm;
            }
        }
        return r;
    }

    private static PeftAdapter DoraAdapter(int r, int inF, int outF, out float[] a, out float[] b, out float[] mag)
    {
        a = Random(r * inF, 21);
        b = Random(outF * r, 22);
        mag = Random(outF, 23).Select(x => Math.Abs(x) + 0.5f).ToArray();
        return Adapter(new PeftAdapterConfig { R = r, Alpha = 2 * r, UseDora = true, TargetModules = TargetModules.FromList(["q_proj"]) },
            (Key(M, ".lora_A.weight"), [r, inF], a), (Key(M, ".lora_B.weight"), [outF, r], b), (Key(M, ".lora_magnitude_vector"), [outF], mag));
    }

    [TestMethod]
    public void DeltaSum_WithDora_AppliesAdaptersOneAfterAnotherInTheOrderGiven()
    {
        const int r = 2, inF = 7, outF = 5;
        using var dora = DoraAdapter(r, inF, outF, out var da, out var db, out var mag);
        var (lora, la, lb) = Lora(M, r, inF, outF, alpha: 4, seed: 30);
        using var _ = lora;
        var target = Target((M + ".weight", [outF, inF]));
        var w = Random(outF * inF, 31);
        var loraDelta = Scaled(Product(lb, la, outF, r, inF), 2.0 * 0.8);
        var doraDelta = Scaled(Product(db, da, outF, r, inF), 2.0);

        // [LoRA, DoRA]: the DoRA norm is taken on W + 0.8·ΔW_lora, as PEFT's merge of the second adapter sees it.
        var loraFirst = (float[])w.Clone();
        MergePlan.Create([new(lora, 0.8), new(dora)], target, "mem").ApplyTo(M + ".weight", loraFirst);
        var expectedLoraFirst = Dora(Add(Add(w, loraDelta), doraDelta), mag, outF, inF);
        AssertClose(expectedLoraFirst, loraFirst, Tol, "LoRA then DoRA", MaxAbs(expectedLoraFirst));

        // [DoRA, LoRA]: DoRA on the base weight, then the LoRA update added.
        var doraFirst = (float[])w.Clone();
        MergePlan.Create([new(dora), new(lora, 0.8)], target, "mem").ApplyTo(M + ".weight", doraFirst);
        var expectedDoraFirst = Add(Dora(Add(w, doraDelta), mag, outF, inF), loraDelta);
        AssertClose(expectedDoraFirst, doraFirst, Tol, "DoRA then LoRA", MaxAbs(expectedDoraFirst));
        CollectionAssert.AreNotEqual(loraFirst, doraFirst, "the order matters with DoRA, as in PEFT");
    }

    [TestMethod]
    public void Dora_WithAWeightOrAPeftCombination_IsRefusedNamingTheAdapter()
    {
        using var dora = DoraAdapter(2, 7, 5, out _, out _, out _);
        var (lora, _, _) = Lora(M, 2, 7, 5, alpha: 4, seed: 30);
        using var _1 = lora;
        var target = Target((M + ".weight", [5, 7]));
        var weighted = BadInput.Throws(() => MergePlan.Create([new(dora, 0.5)], target, "mem"));
        StringAssert.StartsWith(weighted.Message, dora.Directory + ": DoRA adapter weight: found 0.5, expected 1");
        foreach (var c in new[] { Combination.Linear, Combination.Ties, Combination.Svd, Combination.Cat })
        {
            var e = BadInput.Throws(() => MergePlan.Create([new(lora), new(dora)], target, "mem", new MergeOptions { Combination = c }), c.ToString());
            StringAssert.StartsWith(e.Message, dora.Directory + ": module '" + M + "' is DoRA; combination " + c.ToName());
        }
        var combine = BadInput.Throws(() => AdapterCombiner.Combine([new(dora)], Path.Combine(NewDir(), "x")));
        StringAssert.StartsWith(combine.Message, dora.Directory);
    }

    private static PeftAdapter BiasAdapter(int r, int inF, int outF, int seed, out float[] a, out float[] b, out float[] bias)
    {
        a = Random(r * inF, seed);
        b = Random(outF * r, seed + 1);
        bias = Random(outF, seed + 2);
        return Adapter(new PeftAdapterConfig { R = r, Alpha = 3 * r, LoraBias = true, TargetModules = TargetModules.FromList(["q_proj"]) },
            (Key(M, ".lora_A.weight"), [r, inF], a), (Key(M, ".lora_B.weight"), [outF, r], b), (Key(M, ".lora_B.bias"), [outF], bias));
    }

    [TestMethod]
    public void LoraBias_IsMergedIntoTheBaseBias()
    {
        const int r = 2, inF = 6, outF = 4;
        using var x = BiasAdapter(r, inF, outF, 40, out var xa, out var xb, out var xbias);
        using var y = BiasAdapter(r, inF, outF, 50, out var ya, out var yb, out var ybias);
        var target = Target((M + ".weight", [outF, inF]), (M + ".bias", [outF]));
        var plan = MergePlan.Create([new(x, 0.5), new(y, -2.0)], target, "mem");
        CollectionAssert.Contains(plan.TargetTensors.ToList(), M + ".bias");
        var bias = Random(outF, 60);
        var merged = (float[])bias.Clone();
        plan.ApplyTo(M + ".bias", merged);
        // PEFT's Linear.merge: bias += lora_B.bias · scaling (s = 3), here once per adapter with its weight.
        var expected = bias.Select((v, i) => v + (0.5 * 3 * xbias[i]) + (-2.0 * 3 * ybias[i])).ToArray();
        AssertClose(expected, merged, Tol, "bias");
        var w = Random(outF * inF, 61);
        var mw = (float[])w.Clone();
        plan.ApplyTo(M + ".weight", mw);
        var expectedW = Add(Add(w, Scaled(Product(xb, xa, outF, r, inF), 0.5 * 3)), Scaled(Product(yb, ya, outF, r, inF), -2.0 * 3));
        AssertClose(expectedW, mw, Tol, "weight", MaxAbs(expectedW));
    }

    [TestMethod]
    public void LoraBias_IntoACheckpoint_ChangesTheBiasTensor()
    {
        const int r = 2, h = 6;
        var w = Random(h * h, 1);
        var bias = Random(h, 2);
        string ckpt = Checkpoint([[(M + ".weight", DType.F32, [h, h], w), (M + ".bias", DType.F32, [h], bias)]]);
        using var x = BiasAdapter(r, h, h, 70, out _, out _, out var xbias);
        string output = Path.Combine(NewDir(), "out");
        var result = CheckpointMerger.Merge(ckpt, [new(x)], output);
        Assert.AreEqual(2, result.TensorsMerged, "the weight and its bias");
        using var merged = SafetensorsFile.Open(Path.Combine(output, SafetensorsCheckpoint.SingleFileName));
        AssertClose(bias.Select((v, i) => v + (3.0 * xbias[i])).ToArray(), merged.ReadSingles(M + ".bias"), Tol, "bias");
    }

    [TestMethod]
    public void LoraBias_WithoutABaseBiasOrThroughAPeftCombination_IsRefused()
    {
        using var x = BiasAdapter(2, 6, 4, 40, out _, out _, out _);
        using var y = BiasAdapter(2, 6, 4, 50, out _, out _, out _);
        var noBias = BadInput.Throws(() => MergePlan.Create([new(x)], Target((M + ".weight", [4, 6])), "mem"));
        StringAssert.Contains(noBias.Message, $"has a lora_B bias (lora_bias) but the target has no tensor '{M}.bias'");
        var target = Target((M + ".weight", [4, 6]), (M + ".bias", [4]));
        var ties = BadInput.Throws(() => MergePlan.Create([new(x), new(y)], target, "mem", new MergeOptions { Combination = Combination.Ties }));
        StringAssert.StartsWith(ties.Message, x.Directory + ": module '" + M + "' has a lora_B bias (lora_bias); PEFT's add_weighted_adapter drops it");
        BadInput.Throws(() => AdapterCombiner.Combine([new(x)], Path.Combine(NewDir(), "o")));
    }

    // ---- fan_in_fan_out follows the layer type (PEFT's dispatch_default) ----

    [TestMethod]
    [DataRow(false)]
    [DataRow(true)]
    public void FanInFanOut_WrongInTheConfig_FollowsTheWeightShapeWithAWarning(bool configSays)
    {
        const int r = 2, inF = 9, outF = 5;
        var (x, a, b) = Lora(M, r, inF, outF, alpha: 2, seed: 80, fanInFanOut: configSays);
        using var _ = x;
        // The weight says the opposite of the config: [in, out] is a Conv1D (fan_in_fan_out true), [out, in] an nn.Linear.
        bool layer = !configSays;
        var target = Target((M + ".weight", layer ? [inF, outF] : [outF, inF]));
        var plan = MergePlan.Create([new(x)], target, "mem");
        Assert.AreEqual(layer, plan.Entries.Single().Module.FanInFanOut);
        StringAssert.Contains(plan.Warnings.Single(), $"fan_in_fan_out is {(configSays ? "true" : "false")} in adapter_config.json but '{M}.weight' is {(layer ? "a Conv1D weight stored [in, out]" : "an nn.Linear weight stored [out, in]")}");
        var w = Random(inF * outF, 81);
        var merged = (float[])w.Clone();
        plan.ApplyTo(M + ".weight", merged);
        var delta = Product(b, a, outF, r, inF);
        var expected = Add(w, layer ? Transposed(delta, outF, inF) : delta);
        AssertClose(expected, merged, Tol, "merged in the layer's layout", MaxAbs(expected));
    }

    [TestMethod]
    public void FanInFanOut_SquareWeight_FollowsTheModelFamily()
    {
        const int r = 2, h = 6;
        const string gptProj = "transformer.h.0.attn.c_proj";
        var (gpt, ga, gb) = Lora(gptProj, r, h, h, alpha: 2, seed: 90, fanInFanOut: false);
        var (llama, _, _) = Lora(M, r, h, h, alpha: 2, seed: 91, fanInFanOut: true);
        using var _1 = gpt;
        using var _2 = llama;
        var gptPlan = MergePlan.Create([new(gpt)], Target((gptProj + ".weight", [h, h])), "mem", modelType: "gpt2");
        Assert.IsTrue(gptPlan.Entries.Single().Module.FanInFanOut, "GPT-2's c_proj is a Conv1D");
        StringAssert.Contains(gptPlan.Warnings.Single(), "(model_type 'gpt2')");
        var w = Random(h * h, 92);
        var merged = (float[])w.Clone();
        gptPlan.ApplyTo(gptProj + ".weight", merged);
        AssertClose(Add(w, Transposed(Product(gb, ga, h, r, h), h, h)), merged, Tol, "Conv1D layout");

        Assert.IsFalse(MergePlan.Create([new(llama)], Target((M + ".weight", [h, h])), "mem", modelType: "llama").Entries.Single().Module.FanInFanOut, "Llama's projections are nn.Linear");
        var unknown = MergePlan.Create([new(llama)], Target((M + ".weight", [h, h])), "mem", modelType: "some-new-family");
        Assert.IsTrue(unknown.Entries.Single().Module.FanInFanOut, "square weight, unknown family: the config decides");
        Assert.IsEmpty(unknown.Warnings);
    }

    [TestMethod]
    public void FanInFanOut_CheckpointMerge_ReadsTheModelTypeFromConfigJson()
    {
        const int r = 2, h = 6;
        var w = Random(h * h, 1);
        string ckpt = Checkpoint([[(M + ".weight", DType.F32, [h, h], w)]]);  // config.json says llama
        var (x, a, b) = Lora(M, r, h, h, alpha: 2, seed: 93, fanInFanOut: true);
        using var _ = x;
        var plan = CheckpointMerger.Plan(ckpt, [new(x)]);
        Assert.IsFalse(plan.Entries.Single().Module.FanInFanOut);
        StringAssert.Contains(plan.Warnings.Single(), "model_type 'llama'");
        string output = Path.Combine(NewDir(), "out");
        CheckpointMerger.Merge(ckpt, [new(x)], output);
        using var merged = SafetensorsFile.Open(Path.Combine(output, SafetensorsCheckpoint.SingleFileName));
        AssertClose(Add(w, Product(b, a, h, r, h)), merged.ReadSingles(M + ".weight"), Tol, "nn.Linear layout");
    }

    // ---- modules_to_save over a LoRA target ----

    [TestMethod]
    public void ModulesToSave_OverALoraTarget_OnlyTheSavedCopyIsMerged()
    {
        const int r = 2, h = 6;
        var saved = Random(h * h, 100);
        using var x = Adapter(new PeftAdapterConfig { R = r, Alpha = 2, TargetModules = TargetModules.FromList(["q_proj"]), ModulesToSave = ["q_proj"] },
            (Key(M, ".lora_A.weight"), [r, h], Random(r * h, 101)), (Key(M, ".lora_B.weight"), [h, r], Random(h * r, 102)), (Key(M, ".weight"), [h, h], saved));
        Assert.IsEmpty(x.Modules);
        var plan = MergePlan.Create([new(x)], Target((M + ".weight", [h, h])), "mem");
        StringAssert.Contains(plan.Warnings.Single(), "modules_to_save lists it");
        var w = Random(h * h, 103);
        plan.ApplyTo(M + ".weight", w);
        CollectionAssert.AreEqual(saved, w, "PEFT keeps only the saved copy");
    }
}
