using OnnxLora.Core;
using OnnxLora.Generate.Internals;
using OnnxLora.Models.Llama;
using OnnxLora.Training.Data;
using static TorchSharp.torch;

namespace OnnxLora.Generate;

/// <summary>
/// Generation with the TorchSharp model itself (fp32, eval mode, no gradients), the reference the exported model is
/// compared with. It has no key/value cache: each step runs the whole sequence so far, so a step costs O(length)
/// and only short generations are practical.
/// </summary>
public sealed class EagerGenerator : ITextGenerator
{
    private readonly LlamaForCausalLM _model;
    private readonly CheckpointTokenizer? _tokenizer;
    private readonly bool _ownsModel;

    /// <summary>
    /// Generates with <paramref name="model"/> (put in eval mode; disposed with this when <paramref name="ownsModel"/>);
    /// <paramref name="tokenizer"/> is needed for text.
    /// </summary>
    public EagerGenerator(LlamaForCausalLM model, CheckpointTokenizer? tokenizer, bool ownsModel = false)
    {
        ArgumentNullException.ThrowIfNull(model);
        _model = model;
        _tokenizer = tokenizer;
        _ownsModel = ownsModel;
        _model.eval();
    }

    /// <summary>Loads a LLaMA-family checkpoint folder (config.json, safetensors, tokenizer.json when present).</summary>
    /// <exception cref="OnnxLoraException">Bad input: not a LLaMA-family checkpoint, or its files do not match.</exception>
    public static EagerGenerator Load(string checkpoint)
    {
        var model = LlamaForCausalLM.FromPretrained(checkpoint);
        return new EagerGenerator(model, CheckpointTokenizer.Exists(checkpoint) ? CheckpointTokenizer.Load(checkpoint) : null, ownsModel: true);
    }

    /// <inheritdoc/>
    public int ContextLength => _model.Config.MaxPositionEmbeddings;

    /// <inheritdoc/>
    public IReadOnlyList<int> Encode(string prompt) => Tokenizer.Encode(prompt);

    private CheckpointTokenizer Tokenizer => _tokenizer
        ?? throw OnnxLoraException.NotFound("tokenizer of the checkpoint (text prompts need one)", Path.Combine(Path.GetDirectoryName(_model.Config.SourcePath) ?? ".", CheckpointTokenizer.FileName));

    /// <inheritdoc/>
    public GenerationResult Generate(IReadOnlyList<int> promptTokens, GenerationOptions options, Action<string>? onText = null)
    {
        ArgumentNullException.ThrowIfNull(promptTokens);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        GenerateThrow.CheckPrompt(promptTokens, ContextLength, "config.json max_position_embeddings");
        int maxLength = GenerateThrow.MaxLength(promptTokens, options, ContextLength);
        var sampler = new TokenSampler(options);
        var eos = _model.Config.EosTokenIds.Select(e => (int)e).ToHashSet();
        var sequence = promptTokens.Select(t => (long)t).ToList();
        var recorder = new GenerationRecorder(promptTokens, onText);
        using var noGrad = no_grad();
        recorder.Start();
        while (sequence.Count < maxLength && recorder.Count < options.MaxNewTokens)
        {
            int token;
            using (NewDisposeScope())
            {
                var ids = tensor(sequence.ToArray(), [1, sequence.Count]);
                var last = _model.forward(ids, null)[0, -1].to(ScalarType.Float32).contiguous();
                token = sampler.Next(last.data<float>().ToArray());
            }
            sequence.Add(token);
            recorder.Add(token, _tokenizer?.Decode([token]));
            if (eos.Contains(token))
            {
                break;
            }
        }
        return recorder.Result();
    }

    public void Dispose()
    {
        if (_ownsModel)
        {
            _model.Dispose();
        }
    }
}
