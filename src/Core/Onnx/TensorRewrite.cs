using OnnxLora.Core.Peft;

namespace OnnxLora.Core.Onnx;

/// <summary>
/// How a stored tensor is changed before it is written (a merge: W + ΔW). <see cref="Whole"/> changes its fp32 values in the
/// stored layout in place. When the change is formed row by row, <see cref="Rows"/> makes the same change (same bits) as a
/// <see cref="RowUpdate"/>, which lets the writer read, merge and encode the tensor a block of rows at a time in the cache instead
/// of holding it in fp32. It is called when the tensor is written: a row update holds its factors in fp64 and packed, so an
/// exporter holding one per tensor from the start held 0.46 GB more at Llama-3-8B size (peak RSS 1071 vs 609 MiB). Then
/// <see cref="RefuseNonFinite"/>, when set (safe mode), makes the error for a result that is NaN or ±Inf (index in the stored
/// layout, fp32 value), as <see cref="Whole"/> raises it itself.
/// </summary>
public sealed record TensorRewrite(Action<Span<float>> Whole, Func<RowUpdate?>? Rows = null, Func<long, float, Exception>? RefuseNonFinite = null);
