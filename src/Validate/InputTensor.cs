using OnnxLora.Core;
using OnnxLora.Validate.Internals;

namespace OnnxLora.Validate;

/// <summary>
/// One input fed to every model compared (and to the eager reference): a name, a shape and row-major data of
/// one of the element types <see cref="DType.I64"/> (<see cref="long"/>), <see cref="DType.I32"/> (<see cref="int"/>),
/// <see cref="DType.F32"/> (<see cref="float"/>), <see cref="DType.F16"/> (<see cref="Half"/>) or <see cref="DType.Bool"/> (<see cref="bool"/>).
/// </summary>
public sealed class InputTensor
{
    private readonly long[] _shape;

    internal InputTensor(string name, DType elementType, long[] shape, Array data, string source)
    {
        Name = name;
        ElementType = elementType;
        _shape = shape;
        Data = data;
        Source = source;
    }

    /// <summary>The input's name in the graph.</summary>
    public string Name { get; }

    /// <summary>Element type.</summary>
    public DType ElementType { get; }

    /// <summary>The shape.</summary>
    public IReadOnlyList<long> Shape => _shape;

    /// <summary>Number of elements.</summary>
    public long ElementCount => Data.LongLength;

    /// <summary>Where the values came from ("generated: …", "json: path", "npy: path").</summary>
    public string Source { get; }

    internal Array Data { get; }

    internal long[] ShapeArray => _shape;

    /// <summary>The data as <typeparamref name="T"/>, which must match <see cref="ElementType"/>.</summary>
    /// <exception cref="ArgumentException"><typeparamref name="T"/> is not the element type's CLR type.</exception>
    public ReadOnlySpan<T> GetData<T>()
        where T : unmanaged
    {
        if (Data is T[] typed)
        {
            return typed;
        }
        throw new ArgumentException(
            $"input {Name}: requested {typeof(T).Name} data, but its element type is {ElementType.ReportName()}.", nameof(T));
    }
}
