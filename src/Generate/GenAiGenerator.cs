using Microsoft.ML.OnnxRuntimeGenAI;
using OnnxLora.Core;
using OnnxLora.Core.GenAi;
using OnnxLora.Generate.Internals;

namespace OnnxLora.Generate;

/// <summary>
/// Generation through ONNX Runtime GenAI (<c>Microsoft.ML.OnnxRuntimeGenAI</c>) from a model folder such as
/// <c>merge-export export --genai</c> writes. The folder is checked first (<see cref="GenAiFolder"/>); GenAI then runs
/// its own loop: tokenizer, key/value cache, search.
/// </summary>
/// <remarks>
/// The process needs GenAI's native library and ONNX Runtime's (an executable's package references); an executable
/// should hold an <see cref="OgaHandle"/> for its lifetime so GenAI shuts down cleanly.
/// </remarks>
public sealed class GenAiGenerator : ITextGenerator
{
    private readonly Model _model;
    private readonly Tokenizer _tokenizer;
    private readonly HashSet<string> _adapterNames = new(StringComparer.Ordinal);
    private Adapters? _adapters;
    private string? _activeAdapter;

    private GenAiGenerator(GenAiFolder folder, Model model, Tokenizer tokenizer)
    {
        Folder = folder;
        _model = model;
        _tokenizer = tokenizer;
    }

    /// <summary>The checked folder.</summary>
    public GenAiFolder Folder { get; }

    /// <inheritdoc/>
    public int ContextLength => Folder.Config.Model.ContextLength;

    /// <summary>Checks and loads <paramref name="directory"/>.</summary>
    /// <exception cref="OnnxLoraException">Bad input: a file is missing, genai_config.json disagrees with the graph, or GenAI refuses the folder.</exception>
    public static GenAiGenerator Open(string directory)
    {
        var folder = GenAiFolder.Open(directory);
        Model? model = null;
        try
        {
            model = new Model(folder.Directory);
            var tokenizer = new Tokenizer(model);
            // GenAI encodes without special tokens by default (its chat templates add them); a plain prompt gets
            // them, as Hugging Face's tokenizer(text) and the checkpoint's tokenizer give them (e.g. <s> first).
            tokenizer.UpdateOptions(new Dictionary<string, string> { ["add_special_tokens"] = "true" });
            return new GenAiGenerator(folder, model, tokenizer);
        }
        catch (OnnxRuntimeGenAIException e)
        {
            model?.Dispose();
            throw OnnxLoraException.Invalid(folder.Directory, $"ONNX Runtime GenAI cannot load this folder: {e.Message.Split('\n')[0]}", e);
        }
    }

    /// <summary>
    /// The adapter active in each following <see cref="Generate"/> (a name given to <see cref="LoadAdapter"/>), or null for
    /// none: the folder's model with its LoRA inputs at their empty defaults, i.e. the base model.
    /// </summary>
    /// <exception cref="OnnxLoraException">Bad input: no adapter of that name was loaded.</exception>
    public string? ActiveAdapter
    {
        get => _activeAdapter;
        set
        {
            if (value is not null && !_adapterNames.Contains(value))
            {
                throw OnnxLoraException.InvalidOption("adapter", value, _adapterNames.Count == 0 ? "an adapter loaded first (LoadAdapter)" : $"one of {string.Join(", ", _adapterNames.Order(StringComparer.Ordinal))}");
            }
            _activeAdapter = value;
        }
    }

    /// <summary>
    /// Loads an ONNX Runtime adapter file (<c>.onnx_adapter</c>, as <c>export --genai DIR --mode adapters</c> writes into the
    /// folder) through GenAI's <c>Adapters</c> API under <paramref name="name"/>, to be made active with <see cref="ActiveAdapter"/>.
    /// The file is first checked against the folder's graph (Core's <see cref="Core.Onnx.OnnxAdapterFile.CheckFits"/>), so an
    /// adapter for another graph is one line naming both files.
    /// </summary>
    /// <exception cref="OnnxLoraException">Bad input: the file is malformed or does not fit the graph, the name is taken, or GenAI refuses it.</exception>
    public void LoadAdapter(string path, string name)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentException.ThrowIfNullOrEmpty(name);
        string full = Path.GetFullPath(path);
        if (_adapterNames.Contains(name))
        {
            throw OnnxLoraException.InvalidOption("adapter name", name, "a name not loaded yet");
        }
        var adapter = Core.Onnx.OnnxAdapterFile.Read(full);
        string modelFile = Folder.ModelPath;
        var graph = Core.Onnx.OnnxFile.Load(modelFile, new Core.Onnx.OnnxLoadOptions { LoadExternalData = false, ValidateGraph = false }).Graph;
        Core.Onnx.OnnxAdapterFile.CheckFits(adapter, full, graph, modelFile);
        try
        {
            _adapters ??= new Adapters(_model);
            _adapters.LoadAdapter(full, name);
        }
        catch (OnnxRuntimeGenAIException e)
        {
            throw OnnxLoraException.Invalid(full, $"ONNX Runtime GenAI cannot load this adapter: {e.Message.Split('\n')[0]}", e);
        }
        _adapterNames.Add(name);
    }

    /// <inheritdoc/>
    public IReadOnlyList<int> Encode(string prompt)
    {
        using var sequences = _tokenizer.Encode(prompt);
        return sequences[0].ToArray();
    }

    /// <inheritdoc/>
    public GenerationResult Generate(IReadOnlyList<int> promptTokens, GenerationOptions options, Action<string>? onText = null)
    {
        ArgumentNullException.ThrowIfNull(promptTokens);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        GenerateThrow.CheckPrompt(promptTokens, ContextLength, $"{GenAiConfig.FileName} model.context_length");
        using var parameters = new GeneratorParams(_model);
        parameters.SetSearchOption("max_length", GenerateThrow.MaxLength(promptTokens, options, ContextLength));
        parameters.SetSearchOption("do_sample", options.DoSample);
        if (options.DoSample)
        {
            parameters.SetSearchOption("temperature", options.Temperature ?? 1.0);
            parameters.SetSearchOption("top_k", options.TopK ?? Folder.Config.Model.VocabSize);
            parameters.SetSearchOption("top_p", options.TopP ?? 1.0);
            parameters.SetSearchOption("random_seed", options.Seed);
        }
        using var generator = new Generator(_model, parameters);
        if (_activeAdapter is not null)
        {
            generator.SetActiveAdapter(_adapters!, _activeAdapter);
        }
        using var stream = _tokenizer.CreateStream();
        var recorder = new GenerationRecorder(promptTokens, onText);
        recorder.Start();
        generator.AppendTokens(promptTokens.ToArray());
        while (!generator.IsDone() && recorder.Count < options.MaxNewTokens)
        {
            generator.GenerateNextToken();
            int token = generator.GetNextTokens()[0];
            recorder.Add(token, stream.Decode(token));
        }
        return recorder.Result();
    }

    public void Dispose()
    {
        _adapters?.Dispose();
        _tokenizer.Dispose();
        _model.Dispose();
    }
}
