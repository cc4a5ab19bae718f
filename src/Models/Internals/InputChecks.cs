using static TorchSharp.torch;

namespace OnnxLora.Models.Internals;

/// <summary>Checks of forward inputs, with messages that say what was found and what was expected.</summary>
internal static class InputChecks
{
    /// <summary>int64 [batch, seq] ids, all in [0, <paramref name="vocabSize"/>).</summary>
    public static void TokenIds(Tensor ids, long vocabSize, string paramName)
    {
        if (ids.dtype != ScalarType.Int64 || ids.dim() != 2)
        {
            throw ModelThrow.Argument(paramName, "token ids", $"{ids.dtype} {ModelThrow.Shape(ids.shape)}", "int64 [batch, seq]");
        }
        if (ids.numel() == 0)
        {
            throw ModelThrow.Argument(paramName, "token ids", ModelThrow.Shape(ids.shape), "at least one token");
        }
        long min = ids.min().item<long>(), max = ids.max().item<long>();
        if (min < 0 || max >= vocabSize)
        {
            throw ModelThrow.Argument(paramName, "token id", (min < 0 ? min : max).ToString(System.Globalization.CultureInfo.InvariantCulture), $"an id in [0, {vocabSize})");
        }
    }

    /// <summary>An optional int tensor with the same [batch, seq] shape as the ids.</summary>
    public static void SameShape(Tensor? tensor, Tensor ids, string paramName) =>
        IntegerOfShape(tensor, ids.shape, paramName, "like input_ids");

    /// <summary>An optional int tensor of shape <paramref name="shape"/>; <paramref name="like"/> says what that shape is in the message.</summary>
    public static void IntegerOfShape(Tensor? tensor, long[] shape, string paramName, string like)
    {
        if (tensor is null)
        {
            return;
        }
        if (!tensor.shape.SequenceEqual(shape) || is_floating_point(tensor))
        {
            throw ModelThrow.Argument(paramName, paramName, $"{tensor.dtype} {ModelThrow.Shape(tensor.shape)}", $"an integer tensor {ModelThrow.Shape(shape)} {like}");
        }
    }
}
