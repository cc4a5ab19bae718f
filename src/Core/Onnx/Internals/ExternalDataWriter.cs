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
    /// <summary>Writes both files; true when a data file was written (false when no tensor reached the threshold).</summary>
    public static bool Save(ModelProto model, List<TensorProto> tensors, string modelPath, string dataPath, OnnxSaveOptions options)
    {
        string location = Path.GetFileName(dataPath);
        var graph = model.Graph;
        var replaced = new List<(int Index, TensorProto Original)>();
        using var dataFile = AtomicFile.Create(dataPath, options.Overwrite);
        using var modelFile = AtomicFile.Create(modelPath, options.Overwrite);
        try
        {
            long offset = 0;
            byte[] padding = new byte[OnnxFile.ExternalDataAlignment];
            for (int i = 0; i < tensors.Count; i++)
            {
                var tensor = tensors[i];
                ByteString? raw = OnnxTensors.RawBytes(tensor);
                if (raw is null || raw.Length < options.ExternalThresholdBytes)
                {
                    continue;
                }
                int pad = (int)((OnnxFile.ExternalDataAlignment - (offset % OnnxFile.ExternalDataAlignment)) % OnnxFile.ExternalDataAlignment);
                dataFile.Stream.Write(padding, 0, pad);
                offset += pad;
                dataFile.Stream.Write(raw.Span);

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
                reference.ExternalData.Add(new StringStringEntryProto { Key = "length", Value = raw.Length.ToString(CultureInfo.InvariantCulture) });
                offset += raw.Length;
                replaced.Add((i, tensor));
                graph.Initializer[i] = reference;
            }
            model.WriteTo(modelFile.Stream);
        }
        finally
        {
            foreach (var (index, original) in replaced)
            {
                graph.Initializer[index] = original;
            }
        }
        if (replaced.Count == 0)
        {
            // Nothing reached the threshold: no data file is needed.
            dataFile.Dispose();
        }
        else
        {
            dataFile.Commit();
        }
        modelFile.Commit();
        return replaced.Count > 0;
    }
}
