namespace OnnxLora.Core.Safetensors;

/// <summary>What a tensor is, without its data: name, element type and shape.</summary>
public sealed record TensorSpec(string Name, DType DType, IReadOnlyList<long> Shape)
{
    /// <summary>Number of elements (1 for a scalar).</summary>
    public long ElementCount
    {
        get
        {
            long count = 1;
            foreach (long d in Shape)
            {
                count = checked(count * d);
            }
            return count;
        }
    }

    /// <summary>Number of data bytes.</summary>
    public long ByteLength => checked(ElementCount * DType.SizeOf());

    /// <summary>Shape as "[a, b]".</summary>
    public string ShapeText => "[" + string.Join(", ", Shape) + "]";
}

/// <summary>A tensor stored in a safetensors file: its spec and where its bytes are.</summary>
/// <param name="Spec">Name, dtype and shape.</param>
/// <param name="DataOffset">Offset of the first byte inside the data section (as in the header's data_offsets).</param>
/// <param name="ByteLength">Number of data bytes.</param>
public sealed record TensorInfo(TensorSpec Spec, long DataOffset, long ByteLength)
{
    public string Name => Spec.Name;

    public DType DType => Spec.DType;

    public IReadOnlyList<long> Shape => Spec.Shape;

    public long ElementCount => Spec.ElementCount;
}
