using System.Globalization;
using Google.Protobuf;
using Onnx;
using OnnxLora.Core.IO;

namespace OnnxLora.Core.Onnx.Internals;

/// <summary>
/// Writes a model with its large initializers in one data file: tensors at 4 KiB-aligned offsets in
/// graph order, the model file holding location/offset/length references. Both files are written
/// under temporary names and renamed (data file first) only when both are complete.
/// </summary>
internal static class ExternalDataWriter
{
    /// <summary>
    /// Writes both files; true when a data file was written (false when no tensor reached the threshold).
    /// A tensor named in <paramref name="deferredData"/> is written from its source.
    /// </summary>
    public static bool Save(ModelProto model, List<TensorProto> tensors, string modelPath, string dataPath, OnnxSaveOptions options,
        IReadOnlyDictionary<string, OnnxTensorSource> deferredData)
    {
        string location = Path.GetFileName(dataPath);
        var graph = model.Graph;
        var replaced = new List<(int Index, TensorProto Original)>();
        int written = 0;
        using var dataFile = AtomicFile.Create(dataPath, options.Overwrite);
        using var modelFile = AtomicFile.Create(modelPath, options.Overwrite);
        // Writes run behind on their own thread (positioned, kernel copies for unchanged bytes): the next tensor is produced meanwhile.
        using var data = new ExternalDataStream(dataFile);
        try
        {
            long offset = 0;
            byte[] padding = new byte[OnnxFile.ExternalDataAlignment];
            for (int i = 0; i < tensors.Count; i++)
            {
                var tensor = tensors[i];
                var source = deferredData.GetValueOrDefault(tensor.Name);
                if (i + 1 < tensors.Count && deferredData.GetValueOrDefault(tensors[i + 1].Name) is { } next)
                {
                    // The next tensor's bytes come from the disk while this one is produced (a checkpoint larger than the page cache).
                    next.StartPrefetch();
                }
                ByteString? raw = source is null ? OnnxTensors.RawBytes(tensor) : null;
                long length = source?.ByteLength ?? raw?.Length ?? 0;
                if ((source is null && raw is null) || length < options.ExternalThresholdBytes)
                {
                    if (source is not null)
                    {
                        // Small enough to stay inline: its bytes go into a copy of the tensor.
                        var inline = tensor.Clone();
                        inline.RawData = UnsafeByteOperations.UnsafeWrap(source.ToArray());
                        replaced.Add((i, tensor));
                        graph.Initializer[i] = inline;
                    }
                    continue;
                }
                int pad = (int)((OnnxFile.ExternalDataAlignment - (offset % OnnxFile.ExternalDataAlignment)) % OnnxFile.ExternalDataAlignment);
                data.Write(padding, 0, pad);
                offset += pad;
                if (source is null)
                {
                    data.Write(raw!.Span);
                }
                else
                {
                    source.WriteTo(data);
                    if (data.Position != offset + length)
                    {
                        throw new InvalidOperationException($"initializer '{tensor.Name}': its source wrote {data.Position - offset} bytes, expected {length}.");
                    }
                }

                var reference = new TensorProto
                {
                    Name = tensor.Name,
                    DataType = tensor.DataType,
                    DocString = tensor.DocString,
                    DataLocation = TensorProto.Types.DataLocation.External,
                };
                reference.Dims.Add(tensor.Dims);
                reference.MetadataProps.Add(tensor.MetadataProps);
                reference.ExternalData.Add(new StringStringEntryProto { Key = "location", Value = location });
                reference.ExternalData.Add(new StringStringEntryProto { Key = "offset", Value = offset.ToString(CultureInfo.InvariantCulture) });
                reference.ExternalData.Add(new StringStringEntryProto { Key = "length", Value = length.ToString(CultureInfo.InvariantCulture) });
                offset += length;
                written++;
                replaced.Add((i, tensor));
                graph.Initializer[i] = reference;
            }
            model.WriteTo(modelFile.Stream);
            data.Complete();
        }
        finally
        {
            foreach (var (index, original) in replaced)
            {
                graph.Initializer[index] = original;
            }
        }
        if (written == 0)
        {
            // Nothing reached the threshold: no data file is needed.
            dataFile.Dispose();
        }
        else
        {
            dataFile.Commit();
        }
        modelFile.Commit();
        return written > 0;
    }
}
