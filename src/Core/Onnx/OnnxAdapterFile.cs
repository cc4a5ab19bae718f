using System.Runtime.InteropServices;
using Google.FlatBuffers;
using OnnxLora.Core.IO;

namespace OnnxLora.Core.Onnx;

/// <summary>One named tensor of an ONNX Runtime LoRA adapter file: a value for the graph input of that name.</summary>
/// <param name="Name">The graph input it feeds.</param>
/// <param name="DType">Element type.</param>
/// <param name="Shape">Dimensions (a rank-0 LoRA factor has a 0 in them and no data).</param>
/// <param name="Data">The little-endian element bytes, row-major; exactly element count × element size long.</param>
public sealed record OnnxAdapterParameter(string Name, DType DType, IReadOnlyList<long> Shape, ReadOnlyMemory<byte> Data)
{
    /// <summary>The number of elements the shape describes.</summary>
    public long ElementCount => Shape.Aggregate(1L, (n, d) => checked(n * d));
}

/// <summary>The contents of an <c>.onnx_adapter</c> file.</summary>
/// <param name="FormatVersion">The file format version (ONNX Runtime reads 1).</param>
/// <param name="AdapterVersion">The adapter's own version number (free for the producer; 0 when unset).</param>
/// <param name="ModelVersion">The version of the model it is for (free for the producer; 0 when unset).</param>
/// <param name="Parameters">Its tensors, in file order.</param>
public sealed record OnnxAdapter(int FormatVersion, int AdapterVersion, int ModelVersion, IReadOnlyList<OnnxAdapterParameter> Parameters)
{
    /// <summary>The parameter of that name, or null.</summary>
    public OnnxAdapterParameter? Find(string name) => Parameters.FirstOrDefault(p => p.Name == name);
}

/// <summary>
/// ONNX Runtime's LoRA adapter file (<c>.onnx_adapter</c>): a FlatBuffer with file identifier "TORT"
/// whose root table <c>Adapter</c> holds format_version, adapter_version, model_version and a vector
/// of <c>Parameter</c> tables (name, dims, data_type, raw_data aligned to 8). Sessions activate it per
/// run (<c>OrtLoraAdapter</c> + <c>RunOptions.AddActiveLoraAdapter</c>; ONNX Runtime GenAI's
/// <c>Adapters</c>); its parameters replace the graph inputs of the same names.
/// </summary>
/// <remarks>
/// Layout facts from onnxruntime's <c>onnxruntime/lora/adapter_format/adapter_schema.fbs</c> and
/// <c>adapter_format_version.h</c> (format version 1). Written with Google.FlatBuffers'
/// <see cref="FlatBufferBuilder"/>; read with a bounds-checked reader of our own (Internals/FlatBufferReader:
/// the library's C# verifier does not verify buffers over 32 KiB). No generated accessors: the <c>flatc</c>
/// Debian ships (2.0.8) generates code whose version check does not compile against the runtime on
/// NuGet (25.2.10), and the schema has two tables.
/// </remarks>
public static partial class OnnxAdapterFile
{
    /// <summary>The file extension ONNX Runtime and GenAI use.</summary>
    public const string Extension = ".onnx_adapter";

    /// <summary>The FlatBuffers file identifier of adapter files.</summary>
    public const string FileIdentifier = "TORT";

    /// <summary>The format version this project writes and the only one ONNX Runtime 1.31 reads.</summary>
    public const int CurrentFormatVersion = 1;

    // Field slots (the index of each field in its table, in schema order).
    private const int ParameterName = 0, ParameterDims = 1, ParameterDataType = 2, ParameterRawData = 3;
    private const int AdapterFormatVersion = 0, AdapterAdapterVersion = 1, AdapterModelVersion = 2, AdapterParameters = 3;

    /// <summary>Writes an adapter file atomically (nothing under <paramref name="path"/> unless it completes).</summary>
    /// <exception cref="OnnxLoraException">Bad input: a parameter is malformed (named), names repeat, the file would exceed
    /// FlatBuffers' 2 GiB limit, or <paramref name="path"/> exists and <paramref name="overwrite"/> is false.</exception>
    public static void Write(string path, IReadOnlyList<OnnxAdapterParameter> parameters, int adapterVersion = 0, int modelVersion = 0, bool overwrite = false)
    {
        ArgumentNullException.ThrowIfNull(path);
        var bytes = Serialize(parameters, adapterVersion, modelVersion, path);
        using var file = AtomicFile.Create(path, overwrite);
        file.Stream.Write(bytes);
        file.Commit();
    }

    /// <summary>The bytes of an adapter file holding <paramref name="parameters"/>.</summary>
    /// <inheritdoc cref="Write" path="/exception"/>
    public static ArraySegment<byte> Serialize(IReadOnlyList<OnnxAdapterParameter> parameters, int adapterVersion = 0, int modelVersion = 0, string? fileForErrors = null)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        string file = fileForErrors ?? "<adapter>";
        long total = 0;
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var p in parameters)
        {
            CheckParameter(file, p);
            if (!names.Add(p.Name))
            {
                throw OnnxLoraException.Invalid(file, $"parameter '{p.Name}'", "a repeated name", "one parameter per graph input");
            }
            total += p.Data.Length + 64 + (8L * p.Shape.Count) + p.Name.Length;
        }
        if (total >= int.MaxValue - 1024)
        {
            throw OnnxLoraException.Invalid(file, "adapter size", $"{total} bytes", "under 2 GiB (FlatBuffers' limit for one buffer)");
        }
        var builder = new FlatBufferBuilder((int)Math.Max(1024, total + 1024));
        var offsets = new Offset<Table>[parameters.Count];
        for (int i = 0; i < parameters.Count; i++)
        {
            offsets[i] = AddParameter(builder, parameters[i]);
        }
        var vector = builder.CreateVectorOfTables(offsets);
        builder.StartTable(4);
        builder.AddOffset(AdapterParameters, vector.Value, 0);
        builder.AddInt(AdapterModelVersion, modelVersion, 0);
        builder.AddInt(AdapterAdapterVersion, adapterVersion, 0);
        builder.AddInt(AdapterFormatVersion, CurrentFormatVersion, 0);
        builder.Finish(builder.EndTable(), FileIdentifier);
        var buffer = builder.DataBuffer;
        return buffer.ToArraySegment(buffer.Position, buffer.Length - buffer.Position);
    }

    private static Offset<Table> AddParameter(FlatBufferBuilder builder, OnnxAdapterParameter p)
    {
        var name = builder.CreateString(p.Name);
        builder.StartVector(sizeof(long), p.Shape.Count, sizeof(long));
        for (int d = p.Shape.Count - 1; d >= 0; d--)
        {
            builder.AddLong(p.Shape[d]);
        }
        var dims = builder.EndVector();
        // raw_data carries (force_align: 8) in the schema: the vector's bytes start 8-aligned.
        builder.StartVector(1, p.Data.Length, 8);
        if (p.Data.Length > 0)
        {
            builder.Add(MemoryMarshal.TryGetArray(p.Data, out var segment) ? segment : new ArraySegment<byte>(p.Data.ToArray()));
        }
        var raw = builder.EndVector();
        builder.StartTable(4);
        builder.AddOffset(ParameterRawData, raw.Value, 0);
        builder.AddInt(ParameterDataType, (int)p.DType.ToOnnx(), 0);
        builder.AddOffset(ParameterDims, dims.Value, 0);
        builder.AddOffset(ParameterName, name.Value, 0);
        return new Offset<Table>(builder.EndTable());
    }

    private static void CheckParameter(string file, OnnxAdapterParameter p)
    {
        ArgumentNullException.ThrowIfNull(p);
        if (string.IsNullOrEmpty(p.Name))
        {
            throw OnnxLoraException.Invalid(file, "parameter name", "an empty name", "the name of the graph input it feeds");
        }
        if (p.Shape.Any(d => d < 0))
        {
            throw OnnxLoraException.Invalid(file, $"parameter '{p.Name}' shape", $"[{string.Join(", ", p.Shape)}]", "non-negative dimensions");
        }
        long expected;
        try
        {
            expected = checked(p.ElementCount * p.DType.SizeOf());
        }
        catch (OverflowException)
        {
            throw OnnxLoraException.Invalid(file, $"parameter '{p.Name}' shape", $"[{string.Join(", ", p.Shape)}]", "an element count that fits in 64 bits");
        }
        if (expected != p.Data.Length)
        {
            throw OnnxLoraException.Invalid(file, $"parameter '{p.Name}' data", $"{p.Data.Length} bytes",
                $"{expected} ({p.DType} × [{string.Join(", ", p.Shape)}])");
        }
    }
}
