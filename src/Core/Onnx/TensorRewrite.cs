using OnnxLora.Core.Peft;

namespace OnnxLora.Core.Onnx;

/// <summary>
/// How a stored tensor is changed before it is written (a merge: W + ΔW). <see cref="Whole"/> changes its fp32 values in the
/// stored layout in place. When the change is formed row by row, <see cref="Rows"/> is the same change (same bits), which lets
/// the writer read, merge and encode the tensor a block of rows at a time in the cache instead of holding it in fp32; then
/// <see cref="RefuseNonFinite"/>, when set (safe mode), makes the error for a result that is NaN or ±Inf (index in the stored
/// layout, fp32 value), as <see cref="Whole"/> raises it itself.
/// </summary>
public sealed record TensorRewrite(Action<Span<float>> Whole, RowUpdate? Rows = null, Func<long, float, Exception>? RefuseNonFinite = null);
