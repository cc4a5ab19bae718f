using Google.Protobuf;
using Onnx;
using OnnxLora.Core.Internals;
using OnnxLora.Core.IO;
using OnnxLora.Core.Onnx.Internals;

namespace OnnxLora.Core.Onnx;

/// <summary>
/// Reads and writes ONNX model files (<see cref="ModelProto"/>), including initializer data kept
/// in an external file next to the model. Reading treats the file as untrusted: sizes, nesting,
/// graph references and external-data locations are checked before anything is allocated or read.
/// Writing is atomic (temporary names in the destination folder, renamed when complete; the data
/// file first, then the model) and deterministic (same model → same bytes).
/// </summary>
public static partial class OnnxFile
{
    /// <summary>The largest protobuf message (and so the largest .onnx file without external data): 2 GiB − 1.</summary>
    public const long MaxProtobufBytes = int.MaxValue;

    /// <summary>Alignment of each tensor's offset in the external data file.</summary>
    public const int ExternalDataAlignment = 4096;

    /// <summary>The external data file name used for <paramref name="modelPath"/>: "&lt;model file name&gt;.data".</summary>
    public static string ExternalDataFileName(string modelPath) => Path.GetFileName(modelPath) + ".data";

    /// <summary>Reads and validates an ONNX model.</summary>
    /// <exception cref="OnnxLoraException">Bad input: the file does not exist, or it (or its external data) is malformed; the
    /// message names the file and the field.</exception>
    public static ModelProto Load(string path, OnnxLoadOptions? options = null)
    {
        options ??= OnnxLoadOptions.Default;
        ArgumentOutOfRangeException.ThrowIfLessThan(options.RecursionLimit, 1, nameof(options));
        string fullPath = Path.GetFullPath(path);
        var info = new FileInfo(fullPath);
        if (!info.Exists)
        {
            throw OnnxLoraException.NotFound("ONNX model", fullPath);
        }
        if (info.Length > MaxProtobufBytes)
        {
            throw FormatThrow.Invalid(fullPath, "file size", $"{info.Length} bytes",
                "at most 2 GiB (protobuf's limit; larger models keep their weights in external data)");
        }
        if (info.Length == 0)
        {
            throw FormatThrow.Invalid(fullPath, "file size", "0 bytes", "a serialized ONNX ModelProto");
        }

        ModelProto model;
        using (var stream = new FileStream(fullPath, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16))
        {
            try
            {
                var input = CodedInputStream.CreateWithLimits(stream, (int)MaxProtobufBytes, options.RecursionLimit);
                model = ModelProto.Parser.ParseFrom(input);
            }
            catch (InvalidProtocolBufferException e)
            {
                throw FormatThrow.Invalid(fullPath, $"not a valid ONNX protobuf message ({e.Message})", e);
            }
        }
        ModelValidator.Validate(fullPath, model, options.ValidateGraph);
        ExternalDataReader.Resolve(fullPath, model, options.LoadExternalData);
        return model;
    }

    /// <summary>
    /// Writes <paramref name="model"/> to <paramref name="path"/>, moving initializer data to
    /// "&lt;file&gt;.data" as <paramref name="options"/> say. The model object is left as it was.
    /// Initializers named in <paramref name="deferredData"/> (see <see cref="OnnxGraphBuilder.DeferredData"/>)
    /// get their bytes from their sources as they are written: straight into the data file, one tensor
    /// after the other, so neither the model nor one tensor has to fit in memory or under 2 GiB; a model
    /// whose data stays inside the .onnx file (under 2 GiB) has them put in a copy of the model first.
    /// </summary>
    /// <returns>The external data file written, or null when every initializer stayed in the model file.</returns>
    /// <exception cref="OnnxLoraException">Bad input: an output exists and <see cref="OnnxSaveOptions.Overwrite"/> is false, the
    /// model exceeds 2 GiB with <see cref="OnnxExternalData.Never"/>, or a source cannot be read (a checkpoint truncated meanwhile).
    /// Nothing is left under the final names then.</exception>
    /// <exception cref="ArgumentException">The model still refers to external data it has not loaded (the caller's bug).</exception>
    public static string? Save(ModelProto model, string path, OnnxSaveOptions? options = null, IReadOnlyDictionary<string, OnnxTensorSource>? deferredData = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        options ??= OnnxSaveOptions.Default;
        deferredData ??= new Dictionary<string, OnnxTensorSource>();
        ArgumentOutOfRangeException.ThrowIfNegative(options.ExternalThresholdBytes, nameof(options));
        string fullPath = Path.GetFullPath(path);
        string dataPath = Path.Combine(Path.GetDirectoryName(fullPath)!, ExternalDataFileName(fullPath));
        var tensors = model.Graph is null ? [] : model.Graph.Initializer.ToList();
        if (tensors.Any(OnnxTensors.IsExternal))
        {
            throw new ArgumentException($"{fullPath}: the model still refers to external data it has not loaded; load it with LoadExternalData = true before saving.", nameof(model));
        }

        long inlineBytes = tensors.Sum(t => deferredData.TryGetValue(t.Name, out var source) ? source.ByteLength
            : (long)t.RawData.Length + (t.FloatData.Count * 4L) + (t.Int64Data.Count * 8L) + (t.Int32Data.Count * 4L) + (t.DoubleData.Count * 8L));
        bool external = options.ExternalData switch
        {
            OnnxExternalData.Always => true,
            OnnxExternalData.Never => false,
            // Leave generous room for the graph itself under protobuf's 2 GiB limit.
            _ => inlineBytes > MaxProtobufBytes - (256L << 20),
        };
        if (!external && inlineBytes > MaxProtobufBytes - (16L << 20))
        {
            throw FormatThrow.Invalid(fullPath, $"the model has {inlineBytes} bytes of initializer data, over protobuf's 2 GiB limit; use external data (Auto or Always).");
        }
        if (!options.Overwrite)
        {
            ThrowIfExists(fullPath);
            if (external)
            {
                ThrowIfExists(dataPath);
            }
        }

        DiskSpace.EnsureAvailable(fullPath, inlineBytes + (1L << 20), "the ONNX model");
        if (!external)
        {
            if (deferredData.Count > 0)
            {
                model = model.Clone();
                LoadDeferredData(model, deferredData);
            }
            using var file = AtomicFile.Create(fullPath, options.Overwrite);
            model.WriteTo(file.Stream);
            file.Commit();
            return null;
        }
        return ExternalDataWriter.Save(model, tensors, fullPath, dataPath, options, deferredData) ? dataPath : null;
    }

    /// <summary>
    /// Puts the data of each initializer named in <paramref name="deferredData"/> into its raw_data, so the
    /// model holds all its data in memory (each tensor under 2 GiB).
    /// </summary>
    public static void LoadDeferredData(ModelProto model, IReadOnlyDictionary<string, OnnxTensorSource> deferredData)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(deferredData);
        foreach (var tensor in model.Graph?.Initializer ?? [])
        {
            if (deferredData.TryGetValue(tensor.Name, out var source))
            {
                tensor.RawData = UnsafeByteOperations.UnsafeWrap(source.ToArray());
            }
        }
    }

    /// <summary>Serializes the model (with any external data left as references) to bytes.</summary>
    public static byte[] ToBytes(ModelProto model) => model.ToByteArray();

    private static void ThrowIfExists(string path)
    {
        if (File.Exists(path) || Directory.Exists(path))
        {
            throw OnnxLoraException.OutputExists(path);
        }
    }
}
