namespace OnnxLora.Core.Peft;

/// <summary>
/// The merged value of one tensor formed a block of whole rows at a time (row-major, stored layout): additive products
/// (<see cref="DeltaMath.Product"/>) applied in order, each element rounded to fp32 after each, as the whole-tensor merge
/// does, so any blocking gives the same bits. A streamed merge uses it to read, merge, check and encode a tensor block by
/// block while the block is in the cache, instead of passing over a whole fp32 copy of the tensor once per step.
/// </summary>
public sealed class RowUpdate
{
    private readonly DeltaMath.Product[] _products;

    public RowUpdate(IReadOnlyList<DeltaMath.Product> products)
    {
        ArgumentNullException.ThrowIfNull(products);
        if (products.Count == 0 || products.Any(p => p.Rows != products[0].Rows || p.Cols != products[0].Cols))
        {
            throw new ArgumentException("a row update needs at least one product, all of the same shape", nameof(products));
        }
        _products = [.. products];
    }

    public int Rows => _products[0].Rows;

    public int Cols => _products[0].Cols;

    /// <summary>Merges whole rows firstRow, firstRow + 1, … (<paramref name="rows"/>, row-major) in place, on this thread.</summary>
    public void Apply(Span<float> rows, int firstRow)
    {
        foreach (var product in _products)
        {
            product.AddRows(rows, firstRow);
        }
    }

    /// <summary>The updates one after the other, or null when any is null (not formed row by row) or the shapes differ.</summary>
    public static RowUpdate? Sequence(IEnumerable<RowUpdate?> updates)
    {
        var products = new List<DeltaMath.Product>();
        foreach (var u in updates)
        {
            if (u is null || (products.Count > 0 && (u.Rows != products[0].Rows || u.Cols != products[0].Cols)))
            {
                return null;
            }
            products.AddRange(u._products);
        }
        return products.Count == 0 ? null : new RowUpdate(products);
    }
}
