using System.Globalization;
using Onnx;
using OnnxLora.Core.Internals;
using OnnxLora.Core.Onnx;

namespace OnnxLora.Core.GenAi;

/// <summary>
/// An ONNX Runtime GenAI model folder, checked before GenAI opens it: <c>genai_config.json</c>, the decoder model it
/// names, <c>tokenizer.json</c> and <c>tokenizer_config.json</c> are present, and the graph has every input and
/// output the config names, with the config's key/value head count and head size on the cache inputs.
/// </summary>
public sealed class GenAiFolder
{
    private GenAiFolder(string directory, GenAiConfig config)
    {
        Directory = directory;
        Config = config;
    }

    /// <summary>The folder's full path.</summary>
    public string Directory { get; }

    /// <summary>Its genai_config.json.</summary>
    public GenAiConfig Config { get; }

    /// <summary>The decoder model file.</summary>
    public string ModelPath => Path.Combine(Directory, Config.Model.Decoder.Filename);

    /// <summary>Opens and checks <paramref name="directory"/> (the graph is read without its weights).</summary>
    /// <exception cref="OnnxLoraException">Bad input: a file is missing, or the config disagrees with the graph; the message names the file and field.</exception>
    public static GenAiFolder Open(string directory)
    {
        directory = Path.GetFullPath(directory);
        if (!System.IO.Directory.Exists(directory))
        {
            throw OnnxLoraException.NotFound("ONNX Runtime GenAI model folder", directory);
        }
        var config = GenAiConfig.Load(Path.Combine(directory, GenAiConfig.FileName));
        foreach (string name in (string[])["tokenizer.json", "tokenizer_config.json"])
        {
            if (!File.Exists(Path.Combine(directory, name)))
            {
                throw OnnxLoraException.NotFound("tokenizer file of the GenAI folder", Path.Combine(directory, name));
            }
        }
        var folder = new GenAiFolder(directory, config);
        var model = OnnxFile.Load(folder.ModelPath, new OnnxLoadOptions { LoadExternalData = false });
        folder.CheckGraph(model.Graph);
        return folder;
    }

    private void CheckGraph(GraphProto graph)
    {
        string configPath = Path.Combine(Directory, GenAiConfig.FileName);
        var decoder = Config.Model.Decoder;
        var inputs = graph.Input.ToDictionary(i => i.Name, StringComparer.Ordinal);
        var outputs = graph.Output.ToDictionary(o => o.Name, StringComparer.Ordinal);
        int layers = 0;
        while (inputs.ContainsKey(Layer(decoder.Inputs.PastKeyNames, layers)))
        {
            layers++;
        }
        if (layers != decoder.NumHiddenLayers)
        {
            throw FormatThrow.Invalid(configPath, "field 'model.decoder.num_hidden_layers'", decoder.NumHiddenLayers.ToString(CultureInfo.InvariantCulture),
                $"{layers}, the number of '{decoder.Inputs.PastKeyNames}' inputs of {ModelPath}");
        }
        Require(inputs, decoder.Inputs.InputIds, "inputs.input_ids", "input");
        Require(inputs, decoder.Inputs.AttentionMask, "inputs.attention_mask", "input");
        Require(outputs, decoder.Outputs.Logits, "outputs.logits", "output");
        for (int i = 0; i < decoder.NumHiddenLayers; i++)
        {
            CheckCache(Require(inputs, Layer(decoder.Inputs.PastKeyNames, i), "inputs.past_key_names", "input"));
            CheckCache(Require(inputs, Layer(decoder.Inputs.PastValueNames, i), "inputs.past_value_names", "input"));
            CheckCache(Require(outputs, Layer(decoder.Outputs.PresentKeyNames, i), "outputs.present_key_names", "output"));
            CheckCache(Require(outputs, Layer(decoder.Outputs.PresentValueNames, i), "outputs.present_value_names", "output"));
        }
        var logitsDims = outputs[decoder.Outputs.Logits].Type.TensorType.Shape.Dim;
        if (logitsDims.Count == 3 && logitsDims[2].HasDimValue && logitsDims[2].DimValue != Config.Model.VocabSize)
        {
            throw FormatThrow.Invalid(configPath, "field 'model.vocab_size'", Config.Model.VocabSize.ToString(CultureInfo.InvariantCulture),
                $"{logitsDims[2].DimValue}, the last dimension of '{decoder.Outputs.Logits}' in {ModelPath}");
        }

        void CheckCache(ValueInfoProto value)
        {
            var dims = value.Type.TensorType.Shape.Dim;
            Check(dims, 1, decoder.NumKeyValueHeads, "num_key_value_heads", value.Name);
            Check(dims, 3, decoder.HeadSize, "head_size", value.Name);
        }

        void Check(IList<TensorShapeProto.Types.Dimension> dims, int axis, int expected, string field, string name)
        {
            if (dims.Count != 4 || (dims[axis].HasDimValue && dims[axis].DimValue != expected))
            {
                string found = dims.Count != 4 ? $"{dims.Count} dimensions" : dims[axis].DimValue.ToString(CultureInfo.InvariantCulture);
                throw FormatThrow.Invalid(configPath, $"field 'model.decoder.{field}'", expected.ToString(CultureInfo.InvariantCulture),
                    $"{found}, dimension {axis} of '{name}' [batch, kv_heads, sequence, head_size] in {ModelPath}");
            }
        }
    }

    private ValueInfoProto Require(Dictionary<string, ValueInfoProto> values, string name, string field, string kind) =>
        values.TryGetValue(name, out var value)
            ? value
            : throw FormatThrow.Invalid(Path.Combine(Directory, GenAiConfig.FileName), $"field 'model.decoder.{field}'", $"\"{name}\"",
                $"the name of a graph {kind} of {ModelPath} (it has {string.Join(", ", values.Keys.Take(8))}{(values.Count > 8 ? ", …" : "")})");

    /// <summary>GenAI's printf-style layer pattern (<c>past_key_values.%d.key</c>) for layer <paramref name="layer"/>.</summary>
    public static string Layer(string pattern, int layer)
    {
        ArgumentNullException.ThrowIfNull(pattern);
        return pattern.Replace("%d", layer.ToString(CultureInfo.InvariantCulture), StringComparison.Ordinal);
    }
}
