using OnnxLora.Core;
using OnnxLora.Core.Peft;
using OnnxLora.Core.Safetensors;
using static OnnxLora.Merge.Tests.TestData;

namespace OnnxLora.Merge.Tests;

/// <summary>
/// <see cref="MergePlan.RowUpdateFor"/>, the row-block form of a merge the streamed merges use, against
/// <see cref="MergePlan.ApplyTo"/> on the whole tensor: the same bits for every blocking (one row, odd blocks, all rows),
/// in the stored layout and transposed, for one LoRA, several adapters with weights (delta_sum), and a PEFT
/// combination (cat, ties); and no row form (null) where the merge needs the whole tensor or is not a product.
/// </summary>
[TestClass]
public sealed class RowUpdateTests
{
    private const string M = "model.layers.0.mlp.up_proj";
    private const int R = 3, InF = 37, OutF = 21;

    public static IEnumerable<object[]> Plans()
    {
        yield return ["LoRA", Combination.DeltaSum];
        yield return ["two adapters, delta_sum", Combination.DeltaSum];
        yield return ["two adapters, cat", Combination.Cat];
        yield return ["two adapters, ties", Combination.Ties];
    }

    [TestMethod]
    [DynamicData(nameof(Plans))]
    public void RowUpdate_AnyBlocking_IsApplyToBitForBit(string name, Combination combination)
    {
        using var x = Adapter(new PeftAdapterConfig { R = R, Alpha = 6 }, (Key(M, ".lora_A.weight"), [R, InF], Random(R * InF, 1)), (Key(M, ".lora_B.weight"), [OutF, R], Random(OutF * R, 2)));
        using var y = Adapter(new PeftAdapterConfig { R = R, Alpha = 2, UseRsLora = true },
            (Key(M, ".lora_A.weight"), [R, InF], Random(R * InF, 4)), (Key(M, ".lora_B.weight"), [OutF, R], Random(OutF * R, 5)));
        List<WeightedAdapter> adapters = name == "LoRA" ? [new(x)] : [new(x, 0.8), new(y, -1.1)];
        var plan = MergePlan.Create(adapters, Target(), "mem", new MergeOptions { Combination = combination, Density = 0.5 });
        foreach (bool transposed in new[] { false, true })
        {
            (int rows, int cols) = transposed ? (InF, OutF) : (OutF, InF);
            var w = Random(rows * cols, 30);
            var whole = (float[])w.Clone();
            plan.ApplyTo(M + ".weight", whole, transposed);
            Assert.IsFalse(whole.SequenceEqual(w), $"{name}: the merge changed nothing, so the comparison proves nothing");

            var update = plan.RowUpdateFor(M + ".weight", transposed);
            Assert.IsNotNull(update, $"{name}: a LoRA merge has a row form");
            Assert.AreEqual((rows, cols), (update.Rows, update.Cols), name);
            foreach (int block in new[] { 1, 2, 5, rows })
            {
                var byRows = (float[])w.Clone();
                for (int first = 0; first < rows; first += block)
                {
                    int n = Math.Min(block, rows - first);
                    update.Apply(byRows.AsSpan(first * cols, n * cols), first);
                }
                CollectionAssert.AreEqual(whole, byRows, $"{name}, transposed {transposed}, blocks of {block} rows");
            }
        }
    }

    [TestMethod]
    public void RowUpdate_IsNull_WhereTheMergeIsNotAProductOfRows()
    {
        var a = Random(R * InF, 1);
        var b = Random(OutF * R, 2);
        using var dora = Adapter(new PeftAdapterConfig { R = R, Alpha = 4, UseDora = true }, (Key(M, ".lora_A.weight"), [R, InF], a), (Key(M, ".lora_B.weight"), [OutF, R], b),
            (Key(M, ".lora_magnitude_vector"), [OutF], Random(OutF, 3).Select(v => Math.Abs(v) + 0.5f).ToArray()));
        using var loha = Adapter(new PeftAdapterConfig { PeftType = PeftType.LoHa, R = R, Alpha = 3 },
            (Key(M, ".hada_w1_a"), [OutF, R], Random(OutF * R, 4)), (Key(M, ".hada_w1_b"), [R, InF], Random(R * InF, 5)),
            (Key(M, ".hada_w2_a"), [OutF, R], Random(OutF * R, 6)), (Key(M, ".hada_w2_b"), [R, InF], Random(R * InF, 7)));
        using var lora = Adapter(new PeftAdapterConfig { R = R, Alpha = 6 }, (Key(M, ".lora_A.weight"), [R, InF], a), (Key(M, ".lora_B.weight"), [OutF, R], b));
        Assert.IsNull(MergePlan.Create([new(dora)], Target(), "mem").RowUpdateFor(M + ".weight"), "DoRA");
        Assert.IsNull(MergePlan.Create([new(loha)], Target(), "mem").RowUpdateFor(M + ".weight"), "LoHa");
        Assert.IsNull(MergePlan.Create([new(lora), new(loha)], Target(), "mem").RowUpdateFor(M + ".weight"), "LoRA then LoHa");
        Assert.IsNull(MergePlan.Create([new(lora)], Target(), "mem").RowUpdateFor("model.layers.0.mlp.down_proj.weight"), "a tensor the plan leaves");
    }

    [TestMethod]
    public void RewriteFor_MakesTheRowUpdateOnlyWhenAsked()
    {
        // An exporter asks for every tensor's rewrite before it writes the first: a row update made then (its factors in fp64,
        // packed: 1.5 MB here) would be held for every tensor of the model at once (0.46 GB at Llama-3-8B size).
        const int r = 16, n = 4096;
        using var x = Adapter(new PeftAdapterConfig { R = r, Alpha = 32 }, (Key(M, ".lora_A.weight"), [r, n], Random(r * n, 1)), (Key(M, ".lora_B.weight"), [n, r], Random(n * r, 2)));
        var plan = MergePlan.Create([new(x)], new Dictionary<string, TensorSpec> { [M + ".weight"] = new(M + ".weight", DType.F32, [n, n]) }, "mem");
        _ = plan.RewriteFor(M + ".weight");
        long before = GC.GetAllocatedBytesForCurrentThread();
        var rewrite = plan.RewriteFor(M + ".weight");
        long made = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.IsLessThan(64 * 1024L, made, "asking for the rewrite allocates no factors");
        var rows = rewrite.Rows?.Invoke();
        Assert.IsNotNull(rows);
        Assert.AreEqual((n, n), (rows.Rows, rows.Cols));
        Assert.IsGreaterThan(1L << 20, GC.GetAllocatedBytesForCurrentThread() - before, "the row update, when asked, holds the factors");
    }

    private static Dictionary<string, TensorSpec> Target() => new()
    {
        [M + ".weight"] = new(M + ".weight", DType.F32, [OutF, InF]),
        ["model.layers.0.mlp.down_proj.weight"] = new("model.layers.0.mlp.down_proj.weight", DType.F32, [InF, OutF]),
    };
}
