using OnnxLora.Core;
using OnnxLora.Core.Peft;
using OnnxLora.Core.Safetensors;
using static OnnxLora.Merge.Tests.TestData;

namespace OnnxLora.Merge.Tests;

/// <summary>
/// Merging into the transpose of a weight (an ONNX MatMul initializer Wᵀ, <see cref="MergePlan.ApplyTo"/> with
/// transposed) gives exactly the bits of merging the weight itself and transposing the result — for every kind of update
/// (LoRA, rsLoRA, DoRA, LoHa, LoKr, embeddings, fan_in_fan_out) and adapter weight, at sizes whose rows are not multiples
/// of the kernels' 4- and 16-column groups.
/// </summary>
[TestClass]
public sealed class TransposedLayoutTests
{
    private const string M = "model.layers.0.mlp.up_proj";

    public static IEnumerable<object[]> Updates()
    {
        const int r = 3, inF = 37, outF = 21;
        var a = Random(r * inF, 1);
        var b = Random(outF * r, 2);
        yield return ["LoRA", Adapter(new PeftAdapterConfig { R = r, Alpha = 6 }, (Key(M, ".lora_A.weight"), [r, inF], a), (Key(M, ".lora_B.weight"), [outF, r], b)), 1.0];
        yield return ["rsLoRA, weight 0.3", Adapter(new PeftAdapterConfig { R = r, Alpha = 6, UseRsLora = true },
            (Key(M, ".lora_A.weight"), [r, inF], a), (Key(M, ".lora_B.weight"), [outF, r], b)), 0.3];
        yield return ["fan_in_fan_out", Adapter(new PeftAdapterConfig { R = r, Alpha = 2, FanInFanOut = true },
            (Key(M, ".lora_A.weight"), [r, inF], a), (Key(M, ".lora_B.weight"), [outF, r], b)), 1.0];
        var mag = Random(outF, 3).Select(x => Math.Abs(x) + 0.5f).ToArray();
        foreach (double w in new[] { 1.0, 0.6 })
        {
            yield return [$"DoRA, weight {w}", Adapter(new PeftAdapterConfig { R = r, Alpha = 4, UseDora = true },
                (Key(M, ".lora_A.weight"), [r, inF], a), (Key(M, ".lora_B.weight"), [outF, r], b), (Key(M, ".lora_magnitude_vector"), [outF], mag)), w];
        }
        yield return ["LoHa", Adapter(new PeftAdapterConfig { PeftType = PeftType.LoHa, R = r, Alpha = 3 },
            (Key(M, ".hada_w1_a"), [outF, r], Random(outF * r, 4)), (Key(M, ".hada_w1_b"), [r, inF], Random(r * inF, 5)),
            (Key(M, ".hada_w2_a"), [outF, r], Random(outF * r, 6)), (Key(M, ".hada_w2_b"), [r, inF], Random(r * inF, 7))), 1.0];
        // LoKr: w1 [3, 37] full, w2 = w2_a [7, 3] · w2_b [3, 1]: ΔW [21, 37].
        yield return ["LoKr", Adapter(new PeftAdapterConfig { PeftType = PeftType.LoKr, R = r, Alpha = 1 },
            (Key(M, ".lokr_w1"), [3, 37], Random(3 * 37, 8)), (Key(M, ".lokr_w2_a"), [7, r], Random(7 * r, 9)), (Key(M, ".lokr_w2_b"), [r, 1], Random(r, 10))), 1.0];
    }

    [TestMethod]
    [DynamicData(nameof(Updates))]
    public void MergeInto_TransposedWeight_EqualsMergeThenTranspose(string kind, PeftAdapter adapter, double weight)
    {
        using var _ = adapter;
        var update = adapter.ReadUpdate(adapter.Get(M));
        (int rows, int cols) = update.WeightIsTransposed ? (update.InFeatures, update.OutFeatures) : (update.OutFeatures, update.InFeatures);
        var w = Random(rows * cols, 20);

        var stored = (float[])w.Clone();
        update.MergeInto(stored, weight);
        var flipped = DeltaMath.Transpose(w, rows, cols);
        update.MergeInto(flipped, weight, transposed: true);

        CollectionAssert.AreEqual(stored, DeltaMath.Transpose(flipped, cols, rows), $"{kind}: transposed merge, transposed back");
        Assert.IsFalse(stored.SequenceEqual(w), $"{kind}: the merge changed nothing, so the comparison proves nothing");
    }

    [TestMethod]
    public void ApplyTo_TransposedWithSeveralAdaptersAndAReplacement_EqualsStoredLayoutTransposed()
    {
        const int r = 2, inF = 13, outF = 9;
        const string head = "lm_head";
        var config = new PeftAdapterConfig { R = r, Alpha = 4, ModulesToSave = ["lm_head"] };
        using var x = Adapter(config, (Key(M, ".lora_A.weight"), [r, inF], Random(r * inF, 1)), (Key(M, ".lora_B.weight"), [outF, r], Random(outF * r, 2)),
            (Key(head, ".weight"), [7, 5], Random(35, 3)));
        using var y = Adapter(new PeftAdapterConfig { R = r, Alpha = 2, UseRsLora = true },
            (Key(M, ".lora_A.weight"), [r, inF], Random(r * inF, 4)), (Key(M, ".lora_B.weight"), [outF, r], Random(outF * r, 5)));
        var plan = MergePlan.Create([new(x, 0.8), new(y, -1.1)], new Dictionary<string, TensorSpec> { [M + ".weight"] = new(M + ".weight", DType.F32, [outF, inF]), [head + ".weight"] = new(head + ".weight", DType.F32, [7, 5]) }, "mem");
        Assert.IsNotNull(plan.ReplacementFor(head + ".weight"), "the head is replaced by the saved copy");
        foreach (var (name, rows, cols) in new[] { (M + ".weight", outF, inF), (head + ".weight", 7, 5) })
        {
            var w = Random(rows * cols, 30);
            var stored = (float[])w.Clone();
            plan.ApplyTo(name, stored);
            var flipped = DeltaMath.Transpose(w, rows, cols);
            plan.ApplyTo(name, flipped, transposed: true);
            CollectionAssert.AreEqual(stored, DeltaMath.Transpose(flipped, cols, rows), name);
        }
    }
}
