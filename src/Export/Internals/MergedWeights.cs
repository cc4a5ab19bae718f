using OnnxLora.Merge;
using OnnxLora.Training.Lora;
using static TorchSharp.torch;

namespace OnnxLora.Export.Internals;

/// <summary>
/// W' for the LoRA layers of an in-memory model, formed by the merge engine's <see cref="DeltaMath"/>
/// (fp64 sums, one rounding): LoRA W + s·B·A, DoRA m ⊙ V/‖V‖ with V = W + s·B·A, embeddings
/// E + s·Aᵀ·Bᵀ.
/// </summary>
internal static class MergedWeights
{
    public static Tensor For(nn.Module module) => module switch
    {
        LoraLinear linear => Linear(linear),
        LoraEmbedding embedding => Embedding(embedding),
        _ => throw ExportThrow.UnknownAdapter(module.GetType()),
    };

    private static Tensor Linear(LoraLinear layer)
    {
        int outF = checked((int)layer.OutFeatures), inF = checked((int)layer.InFeatures);
        float[] weight = ToArray(layer.Weight);
        float[] a = ToArray(layer.LoraA), b = ToArray(layer.LoraB);
        if (!layer.UseDora)
        {
            DeltaMath.AddProduct(weight, outF, inF, b, a, layer.Rank, layer.Scaling);
        }
        else
        {
            var delta = new float[weight.Length];
            DeltaMath.AddProduct(delta, outF, inF, b, a, layer.Rank, layer.Scaling);
            DeltaMath.ApplyDora(weight, delta, ToArray(layer.Magnitude!), outF, inF, transposed: false);
        }
        return tensor(weight, [outF, inF]);
    }

    private static Tensor Embedding(LoraEmbedding layer)
    {
        int num = checked((int)layer.NumEmbeddings), dim = checked((int)layer.EmbeddingDim), r = layer.Rank;
        float[] weight = ToArray(layer.Weight);
        float[] aT = DeltaMath.Transpose(ToArray(layer.LoraEmbeddingA), r, num);
        float[] bT = DeltaMath.Transpose(ToArray(layer.LoraEmbeddingB), dim, r);
        DeltaMath.AddProduct(weight, num, dim, aT, bT, r, layer.Scaling);
        return tensor(weight, [num, dim]);
    }

    private static float[] ToArray(Tensor t)
    {
        using var scope = NewDisposeScope();
        return t.detach().to(ScalarType.Float32, CPU).contiguous().data<float>().ToArray();
    }
}
