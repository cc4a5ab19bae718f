using System.Buffers.Binary;
using System.Text;
using Google.Protobuf;
using Onnx;

namespace OnnxLora.Reliability;

/// <summary>Hostile inputs built byte by byte (not with the code under test).</summary>
internal static class HostileFiles
{
    /// <summary>A safetensors file: 8-byte little-endian header length (or <paramref name="declaredHeaderLength"/>), the header, the data.</summary>
    public static byte[] Safetensors(string headerJson, byte[] data, ulong? declaredHeaderLength = null)
    {
        byte[] header = Encoding.UTF8.GetBytes(headerJson);
        byte[] bytes = new byte[8 + header.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, declaredHeaderLength ?? (ulong)header.Length);
        header.CopyTo(bytes, 8);
        data.CopyTo(bytes, 8 + header.Length);
        return bytes;
    }

    /// <summary>A checkpoint folder with the sample model's config.json and the given model.safetensors bytes.</summary>
    public static string Checkpoint(string folder, byte[] safetensors)
    {
        Directory.CreateDirectory(folder);
        File.Copy(Path.Combine(Tool.TinyLlama, "config.json"), Path.Combine(folder, "config.json"));
        File.WriteAllBytes(Path.Combine(folder, "model.safetensors"), safetensors);
        return folder;
    }

    /// <summary>A PEFT adapter folder with the given config text and adapter_model.safetensors bytes.</summary>
    public static string Adapter(string folder, string configJson, byte[] safetensors)
    {
        Directory.CreateDirectory(folder);
        File.WriteAllText(Path.Combine(folder, "adapter_config.json"), configJson);
        File.WriteAllBytes(Path.Combine(folder, "adapter_model.safetensors"), safetensors);
        return folder;
    }

    /// <summary>A LoRA config for q_proj with rank <paramref name="r"/> and alpha given as JSON text.</summary>
    public static string LoraConfig(int r, string alphaJson = "16") =>
        $$"""{"peft_type": "LORA", "r": {{r}}, "lora_alpha": {{alphaJson}}, "target_modules": ["q_proj"], "bias": "none", "task_type": "CAUSAL_LM"}""";

    /// <summary>
    /// A one-node ONNX model (y = Identity(w)) whose fp32 initializer 'w' [4] says its bytes are in an
    /// external file at <paramref name="location"/>.
    /// </summary>
    public static byte[] OnnxWithExternalData(string location)
    {
        var w = new TensorProto { Name = "w", DataType = (int)TensorProto.Types.DataType.Float, DataLocation = TensorProto.Types.DataLocation.External };
        w.Dims.Add(4);
        w.ExternalData.Add(new StringStringEntryProto { Key = "location", Value = location });
        w.ExternalData.Add(new StringStringEntryProto { Key = "offset", Value = "0" });
        w.ExternalData.Add(new StringStringEntryProto { Key = "length", Value = "16" });
        var graph = new GraphProto { Name = "hostile" };
        graph.Initializer.Add(w);
        graph.Node.Add(new NodeProto { OpType = "Identity", Name = "id", Input = { "w" }, Output = { "y" } });
        graph.Output.Add(new ValueInfoProto
        {
            Name = "y",
            Type = new TypeProto
            {
                TensorType = new TypeProto.Types.Tensor
                {
                    ElemType = (int)TensorProto.Types.DataType.Float,
                    Shape = new TensorShapeProto { Dim = { new TensorShapeProto.Types.Dimension { DimValue = 4 } } },
                },
            },
        });
        var model = new ModelProto { IrVersion = 8, ProducerName = "hostile-test", Graph = graph };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = 17 });
        return model.ToByteArray();
    }
}
