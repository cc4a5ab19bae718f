using OnnxLora.Core;
using OnnxLora.Core.HuggingFace;
using OnnxLora.Core.Safetensors;
using OnnxLora.Models.Internals;
using OnnxLora.Models.Onnx;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace OnnxLora.Models.Bert;

/// <summary>
/// A BERT encoder whose parameter names are exactly Hugging Face's <c>BertModel</c>:
/// <c>embeddings.{word,position,token_type}_embeddings</c>, <c>embeddings.LayerNorm</c>,
/// <c>encoder.layer.{i}.attention.self.{query,key,value}</c>, <c>encoder.layer.{i}.attention.output.{dense,LayerNorm}</c>,
/// <c>encoder.layer.{i}.intermediate.dense</c>, <c>encoder.layer.{i}.output.{dense,LayerNorm}</c>, and
/// optionally <c>pooler.dense</c>. Post-LN blocks, exact GELU. Forward: (input_ids, attention_mask[,
/// token_type_ids]) → last_hidden_state [batch, seq, hidden]. New instances are in training mode
/// (dropout active); call <c>eval()</c> for inference.
/// </summary>
public sealed partial class BertModel : nn.Module<Tensor, Tensor?, Tensor>
{
    /// <summary>A model with deterministic initial weights (N(0, 0.02²), norms 1, seed 0).</summary>
    public BertModel(BertConfig config, bool addPoolingLayer = true) : this(config, addPoolingLayer, initialize: true)
    {
    }

    private BertModel(BertConfig config, bool addPoolingLayer, bool initialize) : base(nameof(BertModel))
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        Config = config;
        Embeddings = new BertEmbeddings(config);
        Encoder = new BertEncoder(config);
        Pooler = addPoolingLayer ? new BertPooler(config) : null;
        RegisterComponents();
        if (initialize)
        {
            CheckpointIO.Randomize(this, seed: 0, std: 0.02);
        }
    }

    public BertConfig Config { get; }

    [field: ComponentName(Name = "embeddings")]
    public BertEmbeddings Embeddings { get; }

    [field: ComponentName(Name = "encoder")]
    public BertEncoder Encoder { get; }

    /// <summary><c>pooler</c>, or null when the model has no pooling layer.</summary>
    [field: ComponentName(Name = "pooler")]
    public BertPooler? Pooler { get; }

    /// <summary>last_hidden_state [batch, seq, hidden] for ids [batch, seq] and an optional 0/1 padding mask.</summary>
    public override Tensor forward(Tensor inputIds, Tensor? attentionMask) => forward(inputIds, attentionMask, null);

    /// <param name="inputIds">[batch, seq] int64 token ids; seq ≤ max_position_embeddings.</param>
    /// <param name="attentionMask">[batch, seq] int64, 1 for tokens and 0 for padding, or null for none.</param>
    /// <param name="tokenTypeIds">[batch, seq] int64 segment ids, or null for all zeros.</param>
    public Tensor forward(Tensor inputIds, Tensor? attentionMask, Tensor? tokenTypeIds)
    {
        InputChecks.TokenIds(inputIds, Config.VocabSize, nameof(inputIds));
        InputChecks.SameShape(attentionMask, inputIds, nameof(attentionMask));
        InputChecks.SameShape(tokenTypeIds, inputIds, nameof(tokenTypeIds));
        if (inputIds.shape[1] > Config.MaxPositionEmbeddings)
        {
            throw ModelThrow.Argument(nameof(inputIds), "sequence length", inputIds.shape[1].ToString(System.Globalization.CultureInfo.InvariantCulture), $"at most max_position_embeddings ({Config.MaxPositionEmbeddings})");
        }
        if (tokenTypeIds is not null)
        {
            InputChecks.TokenIds(tokenTypeIds, Config.TypeVocabSize, nameof(tokenTypeIds));
        }
        using var scope = NewDisposeScope();
        var mask = attentionMask is null ? null : ExtendedAttentionMask(attentionMask);
        var hidden = Embeddings.call(inputIds, tokenTypeIds);
        return Encoder.call(hidden, mask).MoveToOuterDisposeScope();
    }

    /// <summary>pooler_output [batch, hidden] = tanh(dense(last_hidden_state[:, 0])).</summary>
    /// <exception cref="InvalidOperationException">The model has no pooling layer.</exception>
    public Tensor Pool(Tensor lastHiddenState) =>
        (Pooler ?? throw new InvalidOperationException("this BertModel has no pooling layer (its checkpoint had no pooler.dense).")).call(lastHiddenState);

    /// <summary>The additive key mask [batch, 1, 1, seq]: 0 for tokens, float.MinValue for padding.</summary>
    internal static Tensor ExtendedAttentionMask(Tensor attentionMask)
    {
        using var scope = NewDisposeScope();
        long batch = attentionMask.shape[0], seq = attentionMask.shape[1];
        var keep = attentionMask.ne(0).view(batch, 1, 1, seq);
        var mask = zeros([batch, 1, 1, seq], ScalarType.Float32, attentionMask.device).masked_fill(keep.logical_not(), float.MinValue);
        return mask.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Loads config.json and safetensors weights. Accepts HF <c>BertModel</c> names and the <c>bert.</c>
    /// prefix of <c>BertForX</c> checkpoints (whose task heads are then ignored), LayerNorm
    /// <c>gamma</c>/<c>beta</c> spellings, and skips the <c>position_ids</c> buffer. The pooler is
    /// created when the checkpoint has <c>pooler.dense</c>.
    /// </summary>
    /// <exception cref="OnnxLoraException">Bad input: the config is invalid or not BERT, or the weights do not match it (all problems listed).</exception>
    public static BertModel FromPretrained(string directory)
    {
        var config = BertConfig.Load(directory);
        using var checkpoint = SafetensorsCheckpoint.Open(directory);
        return FromCheckpoint(config, checkpoint, weights: null);
    }

    /// <summary>As <see cref="Llama.LlamaForCausalLM"/>'s: weights copied in, or recorded in <paramref name="weights"/> for a meta-device model.</summary>
    internal static BertModel FromCheckpoint(BertConfig config, SafetensorsCheckpoint checkpoint, OnnxWeightStore? weights)
    {
        CheckpointIO.CheckLayerCount(checkpoint, config.SourcePath!, config.NumHiddenLayers, tensorsPerLayer: 16);
        bool prefixed = checkpoint.Tensors.Any(t => t.Name.StartsWith(Prefix, StringComparison.Ordinal));
        bool withPooler = checkpoint.Tensors.Any(t => MapCheckpointName(t.Name, prefixed) == "pooler.dense.weight");
        var sources = CheckpointIO.Match(checkpoint, Layout(config, withPooler), name => MapCheckpointName(name, prefixed), $"bert ({nameof(BertModel)})");
        if (weights is not null)
        {
            CheckpointIO.Register(weights, sources);
            using var meta = LayerFactory.WithoutWeights();
            return new BertModel(config, withPooler, initialize: false);
        }
        var model = new BertModel(config, withPooler, initialize: false);
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

    /// <summary>A model with every parameter drawn from a generator seeded with <paramref name="seed"/> (N(0, std²); norm scales 1 + N(0, std²)).</summary>
    public static BertModel CreateRandom(BertConfig config, long seed, double std = 0.02, bool addPoolingLayer = true)
    {
        var model = new BertModel(config, addPoolingLayer, initialize: false);
        CheckpointIO.Randomize(model, seed, std);
        return model;
    }

    /// <summary>
    /// Writes config.json and model.safetensors (HF <c>BertModel</c> names, no prefix) into
    /// <paramref name="directory"/>; for a LoRA-injected model the base weights under their original
    /// names. The stored <paramref name="dtype"/> is F32 (default), F16 or BF16.
    /// </summary>
    /// <exception cref="OnnxLoraException">Bad input: an output file exists and <paramref name="overwrite"/> is false.</exception>
    public void SaveCheckpoint(string directory, DType dtype = DType.F32, bool overwrite = false) =>
        CheckpointIO.Save(directory, Config, CheckpointIO.BaseTensors(this, Layout(Config, Pooler is not null)), dtype, overwrite);

    private const string Prefix = "bert.";

    /// <summary>The checkpoint names and shapes this config expects.</summary>
    internal static IReadOnlyList<ParameterSpec> Layout(BertConfig c, bool withPooler)
    {
        long hidden = c.HiddenSize, inter = c.IntermediateSize;
        var specs = new List<ParameterSpec>
        {
            new("embeddings.word_embeddings.weight", [c.VocabSize, hidden]),
            new("embeddings.position_embeddings.weight", [c.MaxPositionEmbeddings, hidden]),
            new("embeddings.token_type_embeddings.weight", [c.TypeVocabSize, hidden]),
            new("embeddings.LayerNorm.weight", [hidden]),
            new("embeddings.LayerNorm.bias", [hidden]),
        };
        void Linear(string name, long outF, long inF)
        {
            specs.Add(new(name + ".weight", [outF, inF]));
            specs.Add(new(name + ".bias", [outF]));
        }
        void Norm(string name)
        {
            specs.Add(new(name + ".weight", [hidden]));
            specs.Add(new(name + ".bias", [hidden]));
        }
        for (int i = 0; i < c.NumHiddenLayers; i++)
        {
            string p = $"encoder.layer.{i}.";
            Linear(p + "attention.self.query", hidden, hidden);
            Linear(p + "attention.self.key", hidden, hidden);
            Linear(p + "attention.self.value", hidden, hidden);
            Linear(p + "attention.output.dense", hidden, hidden);
            Norm(p + "attention.output.LayerNorm");
            Linear(p + "intermediate.dense", inter, hidden);
            Linear(p + "output.dense", hidden, inter);
            Norm(p + "output.LayerNorm");
        }
        if (withPooler)
        {
            Linear("pooler.dense", hidden, hidden);
        }
        return specs;
    }

    /// <summary>Stored name → model name; null to ignore (task heads next to a bert. prefix, the position_ids buffer).</summary>
    private static string? MapCheckpointName(string name, bool prefixed)
    {
        if (prefixed)
        {
            if (!name.StartsWith(Prefix, StringComparison.Ordinal))
            {
                return null;
            }
            name = name[Prefix.Length..];
        }
        if (name.EndsWith("position_ids", StringComparison.Ordinal))
        {
            return null;
        }
        if (name.Contains("LayerNorm.", StringComparison.Ordinal))
        {
            if (name.EndsWith(".gamma", StringComparison.Ordinal))
            {
                return name[..^".gamma".Length] + ".weight";
            }
            if (name.EndsWith(".beta", StringComparison.Ordinal))
            {
                return name[..^".beta".Length] + ".bias";
            }
        }
        return name;
    }
}
