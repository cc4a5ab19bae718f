using OnnxLora.Core;
using OnnxLora.Generate.Internals;
using OnnxLora.Models.Llama;
using OnnxLora.Training.Data;
using static TorchSharp.torch;

namespace OnnxLora.Generate;

/// <summary>
/// Generation with the TorchSharp model itself (fp32, eval mode, no gradients), the reference the exported model is
/// compared with. With its key/value cache (<see cref="KeyValueCache"/>, the default) the prompt runs once (prefill) and
/// each later step runs only the new token against the cached keys and values; without it each step runs the whole
/// sequence so far (O(length) per token: the plain definition, kept for comparisons).
/// </summary>
public sealed class EagerGenerator : ITextGenerator
{
    private readonly LlamaForCausalLM _model;
    private readonly CheckpointTokenizer? _tokenizer;
    private readonly bool _ownsModel;
    private readonly bool _useCache;

    /// <summary>
    /// Generates with <paramref name="model"/> (put in eval mode; disposed with this when <paramref name="ownsModel"/>);
    /// <paramref name="tokenizer"/> is needed for text. <paramref name="useKeyValueCache"/> false recomputes the whole
    /// sequence at every step (same tokens, slower).
    /// </summary>
    public EagerGenerator(LlamaForCausalLM model, CheckpointTokenizer? tokenizer, bool ownsModel = false, bool useKeyValueCache = true)
    {
        ArgumentNullException.ThrowIfNull(model);
        _model = model;
        _tokenizer = tokenizer;
        _ownsModel = ownsModel;
        _useCache = useKeyValueCache;
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
        using var cache = _useCache ? _model.CreateCache() : null;
        recorder.Start();
        while (sequence.Count < maxLength && recorder.Count < options.MaxNewTokens)
        {
            int token;
            using (NewDisposeScope())
            {
                // The tokens the cache has not seen: the whole prompt first (prefill), then the last new token.
                // Without a cache, the whole sequence every step. Batch 1, no padding: default positions and mask.
                long[] input = sequence.Skip((int)(cache?.Length ?? 0)).ToArray();
                var ids = tensor(input, [1, input.Length]);
                var last = _model.forward(ids, null, null, cache)[0, -1].to(ScalarType.Float32).contiguous();
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
