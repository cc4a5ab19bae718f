using OnnxLora.Core;
using OnnxLora.Core.HuggingFace;
using OnnxLora.Core.Safetensors;
using OnnxLora.Models.Internals;
using OnnxLora.Models.Onnx;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace OnnxLora.Models.Llama;

/// <summary>
/// A LLaMA-family causal language model (llama, mistral, qwen2) whose module paths and parameter
/// names are exactly Hugging Face's: <c>model.embed_tokens</c>, <c>model.layers.{i}.self_attn.{q,k,v,o}_proj</c>,
/// <c>model.layers.{i}.mlp.{gate,up,down}_proj</c>, <c>model.layers.{i}.{input,post_attention}_layernorm</c>,
/// <c>model.norm</c>, <c>lm_head</c>. With tied embeddings <c>lm_head</c> shares
/// <c>model.embed_tokens.weight</c> (so <c>named_parameters()</c> lists it once, under the embedding).
/// Forward: (input_ids, attention_mask[, position_ids]) → logits [batch, seq, vocab] (fp32).
/// A new instance is in training mode (TorchSharp's default); call <c>eval()</c> for inference.
/// </summary>
public sealed partial class LlamaForCausalLM : nn.Module<Tensor, Tensor?, Tensor>, IChildReplaceable
{
    /// <summary>A model with deterministic Hugging Face-style initial weights (N(0, 0.02²), norms 1, seed 0).</summary>
    public LlamaForCausalLM(LlamaConfig config) : this(config, initialize: true)
    {
    }

    private LlamaForCausalLM(LlamaConfig config, bool initialize) : base(nameof(LlamaForCausalLM))
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        Config = config;
        Model = new LlamaModel(config);
        LmHead = config.TieWordEmbeddings
            ? nn.Linear(Model.EmbeddingWeight, null)
            : LayerFactory.Linear(config.HiddenSize, config.VocabSize, bias: false);
        RegisterComponents();
        if (initialize)
        {
            InitializeWeights(seed: 0, std: 0.02);
        }
    }

    public LlamaConfig Config { get; }

    /// <summary><c>model</c>: the decoder stack.</summary>
    [field: ComponentName(Name = "model")]
    public LlamaModel Model { get; }

    /// <summary><c>lm_head</c>: Linear [vocab, hidden] without bias (sharing the embedding weight when tied), or its LoRA wrapper.</summary>
    [field: ComponentName(Name = "lm_head")]
    public nn.Module<Tensor, Tensor> LmHead { get; private set; }

    /// <summary>Logits [batch, seq, vocab] for token ids [batch, seq] and an optional 0/1 padding mask [batch, seq].</summary>
    public override Tensor forward(Tensor inputIds, Tensor? attentionMask) => forward(inputIds, attentionMask, null);

    /// <inheritdoc cref="LlamaModel.forward(Tensor, Tensor?, Tensor?)"/>
    public Tensor forward(Tensor inputIds, Tensor? attentionMask, Tensor? positionIds) => forward(inputIds, attentionMask, positionIds, null);

    /// <summary>
    /// Logits [batch, seq, vocab] of the new tokens <paramref name="inputIds"/>, continuing those held in
    /// <paramref name="cache"/> (extended by this call): prefill with an empty cache, then decode a token at a time.
    /// </summary>
    /// <inheritdoc cref="LlamaModel.forward(Tensor, Tensor?, Tensor?, KeyValueCache?)"/>
    public Tensor forward(Tensor inputIds, Tensor? attentionMask, Tensor? positionIds, KeyValueCache? cache)
    {
        using var scope = NewDisposeScope();
        var hidden = Model.forward(inputIds, attentionMask, positionIds, cache);
        return LmHead.call(hidden).MoveToOuterDisposeScope();
    }

    /// <summary>An empty key/value cache for this model's layers.</summary>
    public KeyValueCache CreateCache() => new(Config.NumHiddenLayers);

    /// <summary>Loads config.json and the safetensors weights (single file or shards; F32/F16/BF16 stored, fp32 in memory).</summary>
    /// <exception cref="OnnxLoraException">Bad input: the config is invalid or not LLaMA-family, or the weights do not match it (every missing, unexpected or misshapen tensor is listed).</exception>
    public static LlamaForCausalLM FromPretrained(string directory)
    {
        var config = LlamaConfig.Load(directory);
        using var checkpoint = SafetensorsCheckpoint.Open(directory);
        return FromCheckpoint(config, checkpoint, weights: null);
    }

    /// <summary>
    /// The model of <paramref name="config"/>, matched against <paramref name="checkpoint"/>: with its
    /// weights copied in, or — given <paramref name="weights"/> — on the meta device (no data), every parameter
    /// (and the tied lm_head) recorded in <paramref name="weights"/> instead.
    /// </summary>
    internal static LlamaForCausalLM FromCheckpoint(LlamaConfig config, SafetensorsCheckpoint checkpoint, OnnxWeightStore? weights)
    {
        CheckpointIO.CheckLayerCount(checkpoint, config.SourcePath!, config.NumHiddenLayers, tensorsPerLayer: 9);
        var sources = CheckpointIO.Match(checkpoint, Layout(config), name => MapCheckpointName(name, config), $"{config.ModelType} ({nameof(LlamaForCausalLM)})");
        if (weights is not null)
        {
            CheckpointIO.Register(weights, sources);
            if (config.TieWordEmbeddings)
            {
                weights.Alias("lm_head.weight", "model.embed_tokens.weight");
            }
            using var meta = LayerFactory.WithoutWeights();
            return new LlamaForCausalLM(config, initialize: false);
        }
        var model = new LlamaForCausalLM(config, initialize: false);
        try
        {
            CheckpointIO.Copy(model, sources);
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>
    /// A model with every parameter drawn from a generator seeded with <paramref name="seed"/>:
    /// N(0, std²), norm scales 1 + N(0, std²). The same seed gives the same weights.
    /// </summary>
    public static LlamaForCausalLM CreateRandom(LlamaConfig config, long seed, double std = 0.02)
    {
        var model = new LlamaForCausalLM(config, initialize: false);
        model.InitializeWeights(seed, std);
        return model;
    }

    private void InitializeWeights(long seed, double std) => CheckpointIO.Randomize(this, seed, std);

    /// <summary>
    /// Writes config.json and model.safetensors (Hugging Face names; no lm_head.weight when tied) into
    /// <paramref name="directory"/>. For a LoRA-injected model the base weights are written under their
    /// original names and the adapters are left out. The stored <paramref name="dtype"/> is F32 (default),
    /// F16 or BF16; torch_dtype in config.json says the same.
    /// </summary>
    /// <exception cref="OnnxLoraException">Bad input: an output file exists and <paramref name="overwrite"/> is false.</exception>
    public void SaveCheckpoint(string directory, DType dtype = DType.F32, bool overwrite = false) =>
        CheckpointIO.Save(directory, Config, CheckpointIO.BaseTensors(this, Layout(Config)), dtype, overwrite);

    /// <summary>The checkpoint names and shapes this config expects, in Hugging Face order.</summary>
    internal static IReadOnlyList<ParameterSpec> Layout(LlamaConfig c)
    {
        long hidden = c.HiddenSize, q = (long)c.NumAttentionHeads * c.HeadDim, kv = (long)c.NumKeyValueHeads * c.HeadDim, inter = c.IntermediateSize;
        var specs = new List<ParameterSpec> { new("model.embed_tokens.weight", [c.VocabSize, hidden]) };
        for (int i = 0; i < c.NumHiddenLayers; i++)
        {
            string p = $"model.layers.{i}.";
            void Linear(string name, long outF, long inF, bool bias)
            {
                specs.Add(new(p + name + ".weight", [outF, inF]));
                if (bias)
                {
                    specs.Add(new(p + name + ".bias", [outF]));
                }
            }
            Linear("self_attn.q_proj", q, hidden, c.QkvBias);
            Linear("self_attn.k_proj", kv, hidden, c.QkvBias);
            Linear("self_attn.v_proj", kv, hidden, c.QkvBias);
            Linear("self_attn.o_proj", hidden, q, c.OutputProjectionBias);
            Linear("mlp.gate_proj", inter, hidden, c.MlpBias);
            Linear("mlp.up_proj", inter, hidden, c.MlpBias);
            Linear("mlp.down_proj", hidden, inter, c.MlpBias);
            specs.Add(new(p + "input_layernorm.weight", [hidden]));
            specs.Add(new(p + "post_attention_layernorm.weight", [hidden]));
        }
        specs.Add(new("model.norm.weight", [hidden]));
        if (!c.TieWordEmbeddings)
        {
            specs.Add(new("lm_head.weight", [c.VocabSize, hidden]));
        }
        return specs;
    }

    /// <summary>Stored name → model name; null for tensors to ignore (rotary inv_freq buffers; lm_head when tied).</summary>
    private static string? MapCheckpointName(string name, LlamaConfig config)
    {
        if (name.EndsWith("rotary_emb.inv_freq", StringComparison.Ordinal))
        {
            return null;
        }
        if (config.TieWordEmbeddings && name == "lm_head.weight")
        {
            return null;
        }
        return name;
    }

    void IChildReplaceable.ReplaceChild(string name, nn.Module<Tensor, Tensor> replacement)
    {
        if (name != "lm_head")
        {
            throw ModelThrow.Misuse(nameof(name), $"{nameof(LlamaForCausalLM)} has no replaceable child '{name}'");
        }
        LmHead = replacement;
        _internal_submodules[name] = replacement;
    }
}
