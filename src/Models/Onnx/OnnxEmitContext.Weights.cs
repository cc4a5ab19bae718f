using OnnxLora.Core;
using OnnxLora.Core.Onnx;
using static TorchSharp.torch;

namespace OnnxLora.Models.Onnx;

public sealed partial class OnnxEmitContext
{
    /// <summary>
    /// The initializer holding model parameter <paramref name="parameter"/> in <see cref="ComputeType"/>
    /// (transposed when <paramref name="transpose"/>), named <paramref name="name"/>. A parameter
    /// already emitted is reused: under its first name, or through one Transpose node when it was
    /// emitted in the other orientation (tied embeddings and LM head). With an <see cref="OnnxWeightStore"/>
    /// the data is the store's tensor of that name, written when the model is saved (the parameter
    /// then only gives the shape and may hold no data).
    /// </summary>
    public string ParameterInitializer(string name, Tensor parameter, bool transpose = false)
    {
        ArgumentNullException.ThrowIfNull(parameter);
        var store = _shared.Weights;
        string storage = store is null ? StorageKey(parameter) : store.StorageKey(name);
        var key = (storage, transpose);
        if (_shared.Emitted.TryGetValue(key, out string? existing))
        {
            return existing;
        }
        if (parameter.dim() == 2 && _shared.Emitted.TryGetValue((storage, !transpose), out string? other))
        {
            string flipped = Builder.AddNode("Transpose", [other], NodeName("Transpose"), OnnxAttributes.Ints("perm", 1, 0));
            _shared.Emitted.Add(key, flipped);
            return flipped;
        }
        string added = store is null
            ? TensorInitializer(name, parameter, transpose, ComputeType)
            : Builder.AddInitializer(name, store.Source(name, ComputeType, transpose));
        _shared.Emitted.Add(key, added);
        return added;
    }

    /// <summary>
    /// The values of model parameter <paramref name="parameter"/> (named <paramref name="name"/>) as an fp32 CPU tensor the
    /// caller disposes, for a tensor the emission computes from weights (DoRA's row norm): a copy of the parameter, or with an
    /// <see cref="OnnxWeightStore"/> the store's tensor of that name read from its file (one tensor in memory at a time).
    /// </summary>
    public Tensor ParameterValues(string name, Tensor parameter)
    {
        ArgumentNullException.ThrowIfNull(parameter);
        return _shared.Weights is { } store
            ? tensor(store.ReadSingles(name), parameter.shape, ScalarType.Float32)
            : parameter.detach().to(ScalarType.Float32, CPU, copy: true);
    }

    /// <summary>
    /// An initializer holding a computed tensor (merged weights, norms) in <paramref name="dtype"/>
    /// (default <see cref="ComputeType"/>), transposed when <paramref name="transpose"/>. Never shared.
    /// </summary>
    public string TensorInitializer(string name, Tensor value, bool transpose = false, DType? dtype = null)
    {
        ArgumentNullException.ThrowIfNull(value);
        var target = dtype ?? ComputeType;
        using var scope = NewDisposeScope();
        var t = value.detach().to(target.ToScalarType(), CPU).contiguous();
        long[] shape = t.shape;
        long byteCount = t.numel() * target.SizeOf();
        if (byteCount > Array.MaxLength)
        {
            throw Internals.OnnxEmitThrow.Unsupported(name, $"{byteCount} bytes; a tensor computed in memory must be under 2 GiB (one array); export from the checkpoint (OnnxExporter.ExportPretrained) to stream larger ones.");
        }
        if (transpose && shape.Length != 2)
        {
            throw Internals.OnnxEmitThrow.Argument(nameof(value), $"{name}: only 2-D tensors can be stored transposed; found {shape.Length} dims.");
        }
        byte[] bytes = new byte[byteCount];
        t.bytes.CopyTo(bytes);
        if (!transpose)
        {
            return Builder.AddInitializerWrapped(name, target, shape, bytes);
        }
        // Held in the model (a computed tensor has no file to stream from), transposed by the code that streams checkpoint tensors.
        var transposed = OnnxTensorSource.FromBytes(bytes, target, shape, transpose: true);
        return Builder.AddInitializerWrapped(name, target, [.. transposed.Shape], transposed.ToArray());
    }

    /// <summary>
    /// A LoRA factor as a graph input of <see cref="ComputeType"/> named <paramref name="name"/> (the PEFT key),
    /// shaped [<paramref name="features"/>, r] for A (<paramref name="rankFirst"/> false) or [r, features] for B,
    /// with r symbolic ("&lt;path&gt;.lora_rank") and an empty rank-0 default (<see cref="OnnxExportMode.Adapters"/>).
    /// </summary>
    public string LoraFactorInput(string name, long features, bool rankFirst)
    {
        string rank = ParameterName("lora_rank");
        long[] empty = rankFirst ? [0, features] : [features, 0];
        var defaultValue = OnnxTensors.Create(name, ComputeType, empty, ReadOnlySpan<byte>.Empty);
        return rankFirst ? Builder.AddInputWithDefault(defaultValue, rank, features) : Builder.AddInputWithDefault(defaultValue, features, rank);
    }

    /// <summary>A floating-point initializer from fp32 values, stored in <paramref name="dtype"/> (default <see cref="ComputeType"/>).</summary>
    public string FloatInitializer(string name, ReadOnlySpan<long> shape, ReadOnlySpan<float> values, DType? dtype = null) =>
        Builder.AddInitializer(name, dtype ?? ComputeType, shape, values);

    /// <summary>A scalar constant of <see cref="ComputeType"/> (or <paramref name="dtype"/>), shared with equal constants.</summary>
    public string Scalar(float value, DType? dtype = null) => Builder.AddConstant("const", dtype ?? ComputeType, [], [value]);

    /// <summary>A 1-D int64 constant, shared with equal constants.</summary>
    public string Int64s(params long[] values) => Builder.AddConstant("const_i64", [values.Length], values);

    /// <summary>A scalar int64 constant, shared with equal constants.</summary>
    public string Int64Scalar(long value) => Builder.AddConstant("const_i64", [], [value]);

    /// <summary>
    /// Identifies the memory a parameter views (storage address, offset, shape, strides), so two
    /// parameter objects over the same memory — tied weights — are recognised as one.
    /// </summary>
    private static string StorageKey(Tensor parameter)
    {
        string layout = $"{parameter.dtype}|{parameter.storage_offset()}|{string.Join(",", parameter.shape)}|{string.Join(",", parameter.stride())}";
        IntPtr address = parameter.dtype switch
        {
            ScalarType.Float32 => parameter.storage<float>().data_ptr(),
            ScalarType.Float16 => parameter.storage<Half>().data_ptr(),
            ScalarType.Float64 => parameter.storage<double>().data_ptr(),
            _ => parameter.Handle,
        };
        return $"{address}|{layout}";
    }
}
