using System.Runtime.CompilerServices;
using OnnxLora.Core;
using OnnxLora.Core.Safetensors;
using OnnxLora.Merge.Internals;
using OnnxLora.Training.Lora;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace OnnxLora.Merge;

/// <summary>
/// Merging into TorchSharp models in memory, with the formulas of <see cref="DeltaMath"/>: either the
/// LoRA layers of an injected model (<see cref="LoraLinear"/>, <see cref="LoraEmbedding"/>) are folded
/// into their base weights, or a <see cref="Core.Peft.PeftAdapter"/> is merged into a plain model's
/// parameters by name. ΔW is formed in fp32 with fp64 sums and written back once in the parameter's dtype.
/// </summary>
public static class ModelMerge
{
    /// <summary>Layers merged by <see cref="MergeInPlace"/>, with the weight a DoRA merge replaced (owned here until unmerge).</summary>
    private static readonly ConditionalWeakTable<nn.Module, MergedState> Merged = new();

    private sealed class MergedState(Tensor? saved)
    {
        public Tensor? Saved { get; } = saved;
    }

    /// <summary>
    /// Folds every LoRA layer of <paramref name="model"/> into its base weight — W' = W + s·B·A
    /// (LoRA), E' = E + s·(B·A)ᵀ (embedding), m ⊙ (W + s·B·A)/‖W + s·B·A‖ (DoRA) — and disables the
    /// adapter branch, so the model computes the same function with plain weights. Layers already
    /// merged are skipped.
    /// </summary>
    /// <returns>The paths of the layers merged now.</returns>
    /// <exception cref="OnnxLoraException">Bad input: safe mode and a merged weight holds NaN/Inf (named); nothing of that layer is changed.</exception>
    public static IReadOnlyList<string> MergeInPlace(nn.Module model, bool safeMode = true)
    {
        ArgumentNullException.ThrowIfNull(model);
        var done = new List<string>();
        foreach (var (path, layer) in model.named_modules())
        {
            if (layer is not (LoraLinear or LoraEmbedding) || Merged.TryGetValue(layer, out _))
            {
                continue;
            }
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            Parameter weight;
            float[] w;
            Tensor? saved = null; // DoRA only: owned by the table until UnmergeInPlace disposes it.
            if (layer is LoraLinear linear)
            {
                weight = linear.Weight;
                w = ToSingles(weight);
                int outF = (int)linear.OutFeatures, inF = (int)linear.InFeatures, r = linear.Rank;
                var a = ToSingles(linear.LoraA);
                var b = ToSingles(linear.LoraB);
                if (linear.UseDora)
                {
                    var delta = new float[w.Length];
                    DeltaMath.AddProduct(delta, outF, inF, b, a, r, linear.Scaling);
                    DeltaMath.ApplyDora(w, delta, ToSingles(linear.Magnitude!), outF, inF, transposed: false);
                }
                else
                {
                    DeltaMath.AddProduct(w, outF, inF, b, a, r, linear.Scaling);
                }
                Check(path + ".weight", w, safeMode);
                var previous = linear.ReplaceBaseWeight(FromSingles(w, weight));
                saved = linear.UseDora ? previous.DetachFromDisposeScope() : null;
                linear.AdapterEnabled = false;
            }
            else
            {
                var embedding = (LoraEmbedding)layer;
                weight = embedding.Weight;
                w = ToSingles(weight);
                int num = (int)embedding.NumEmbeddings, dim = (int)embedding.EmbeddingDim, r = embedding.Rank;
                var a = ToSingles(embedding.LoraEmbeddingA);
                var b = ToSingles(embedding.LoraEmbeddingB);
                DeltaMath.AddProduct(w, num, dim, DeltaMath.Transpose(a, r, num), DeltaMath.Transpose(b, dim, r), r, embedding.Scaling);
                Check(path + ".weight", w, safeMode);
                embedding.ReplaceBaseWeight(FromSingles(w, weight));
                embedding.AdapterEnabled = false;
            }
            Merged.AddOrUpdate(layer, new MergedState(saved));
            done.Add(path);
        }
        return done;
    }

    /// <summary>
    /// Undoes <see cref="MergeInPlace"/>: W = W' − s·B·A for LoRA and embeddings (recomputed), the
    /// weight saved at merge time for DoRA; re-enables the adapter branch.
    /// </summary>
    /// <returns>The paths of the layers unmerged.</returns>
    public static IReadOnlyList<string> UnmergeInPlace(nn.Module model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var done = new List<string>();
        foreach (var (path, layer) in model.named_modules())
        {
            if (layer is not (LoraLinear or LoraEmbedding) || !Merged.TryGetValue(layer, out var state))
            {
                continue;
            }
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            if (layer is LoraLinear linear)
            {
                if (state.Saved is not null)
                {
                    linear.ReplaceBaseWeight(state.Saved);
                    state.Saved.Dispose();
                }
                else
                {
                    var w = ToSingles(linear.Weight);
                    DeltaMath.AddProduct(w, (int)linear.OutFeatures, (int)linear.InFeatures, ToSingles(linear.LoraB), ToSingles(linear.LoraA), linear.Rank, -linear.Scaling);
                    linear.ReplaceBaseWeight(FromSingles(w, linear.Weight));
                }
                linear.AdapterEnabled = true;
            }
            else
            {
                var embedding = (LoraEmbedding)layer;
                int num = (int)embedding.NumEmbeddings, dim = (int)embedding.EmbeddingDim, r = embedding.Rank;
                var w = ToSingles(embedding.Weight);
                DeltaMath.AddProduct(w, num, dim, DeltaMath.Transpose(ToSingles(embedding.LoraEmbeddingA), r, num),
                    DeltaMath.Transpose(ToSingles(embedding.LoraEmbeddingB), dim, r), r, -embedding.Scaling);
                embedding.ReplaceBaseWeight(FromSingles(w, embedding.Weight));
                embedding.AdapterEnabled = true;
            }
            Merged.Remove(layer);
            done.Add(path);
        }
        return done;
    }

    /// <summary>
    /// Merges adapters (saved PEFT folders) into the parameters of a plain, non-injected model by
    /// name, with the plan's combination. Parameter names play the role of checkpoint tensor names
    /// (same prefix rules as <see cref="MergePlan.Create(IReadOnlyList{WeightedAdapter}, IReadOnlyDictionary{string, TensorSpec}, string, MergeOptions?)"/>).
    /// </summary>
    /// <returns>The plan that was applied.</returns>
    public static MergePlan MergeAdapters(nn.Module model, IReadOnlyList<WeightedAdapter> adapters, MergeOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        var parameters = model.named_parameters().ToDictionary(p => p.name, p => p.parameter, StringComparer.Ordinal);
        var specs = parameters.ToDictionary(p => p.Key, p => new TensorSpec(p.Key, DTypeOf(p.Value.dtype), p.Value.shape), StringComparer.Ordinal);
        var plan = MergePlan.Create(adapters, specs, model.GetName(), options);
        // Compute every tensor first so a failure leaves the model unchanged.
        var results = new List<(Parameter Parameter, float[] Values)>();
        foreach (string name in plan.TargetTensors)
        {
            var p = parameters[name];
            var values = ToSingles(p);
            plan.ApplyTo(name, values);
            results.Add((p, values));
        }
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        foreach (var (p, values) in results)
        {
            p.copy_(FromSingles(values, p));
        }
        return plan;
    }

    private static void Check(string name, float[] w, bool safeMode)
    {
        if (!safeMode)
        {
            return;
        }
        long bad = FloatCodec.FirstNonFinite(w);
        if (bad >= 0)
        {
            throw MergeThrow.NonFinite("model", name, bad, w[bad], "after merging");
        }
    }

    private static float[] ToSingles(Tensor t)
    {
        using var scope = NewDisposeScope();
        return t.detach().to(ScalarType.Float32).cpu().contiguous().data<float>().ToArray();
    }

    private static Tensor FromSingles(float[] values, Tensor like) =>
        tensor(values, like.shape, ScalarType.Float32).to(like.dtype).to(like.device);

    private static DType DTypeOf(ScalarType t) => t switch
    {
        ScalarType.Float32 => DType.F32,
        ScalarType.Float16 => DType.F16,
        ScalarType.BFloat16 => DType.BF16,
        ScalarType.Float64 => DType.F64,
        ScalarType.Int64 => DType.I64,
        ScalarType.Int32 => DType.I32,
        ScalarType.Int16 => DType.I16,
        ScalarType.Int8 => DType.I8,
        ScalarType.Bool => DType.Bool,
        _ => DType.U8,
    };
}
