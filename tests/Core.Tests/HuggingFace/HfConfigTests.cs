using System.Text.Json;
using OnnxLora.Core.HuggingFace;

namespace OnnxLora.Core.Tests.HuggingFace;

[TestClass]
public sealed class HfConfigTests
{
    private const string Llama3Json = """
        {
          "architectures": ["LlamaForCausalLM"],
          "attention_bias": false,
          "attention_dropout": 0.0,
          "bos_token_id": 128000,
          "eos_token_id": [128001, 128008, 128009],
          "hidden_act": "silu",
          "hidden_size": 2048,
          "initializer_range": 0.02,
          "intermediate_size": 8192,
          "max_position_embeddings": 131072,
          "mlp_bias": false,
          "model_type": "llama",
          "num_attention_heads": 32,
          "num_hidden_layers": 16,
          "num_key_value_heads": 8,
          "pretraining_tp": 1,
          "rms_norm_eps": 1e-05,
          "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0, "original_max_position_embeddings": 8192, "rope_type": "llama3"},
          "rope_theta": 500000.0,
          "tie_word_embeddings": true,
          "torch_dtype": "bfloat16",
          "transformers_version": "4.45.0.dev0",
          "use_cache": true,
          "vocab_size": 128256
        }
        """;

    private static string Write(TempFolder dir, string json, string name = "config.json")
    {
        string path = Path.Combine(dir.Path, name);
        File.WriteAllText(path, json);
        return path;
    }

    [TestMethod]
    public void Load_Llama3Config_ReadsEveryField()
    {
        using var dir = new TempFolder();
        Write(dir, Llama3Json);
        var config = (LlamaConfig)HfConfig.Load(dir.Path);
        Assert.AreEqual("llama", config.ModelType);
        Assert.AreEqual(128256, config.VocabSize);
        Assert.AreEqual(2048, config.HiddenSize);
        Assert.AreEqual(8192, config.IntermediateSize);
        Assert.AreEqual(16, config.NumHiddenLayers);
        Assert.AreEqual(32, config.NumAttentionHeads);
        Assert.AreEqual(8, config.NumKeyValueHeads);
        Assert.AreEqual(64, config.HeadDim);
        Assert.AreEqual(1e-5, config.RmsNormEps);
        Assert.AreEqual(500000.0, config.RopeTheta);
        Assert.IsTrue(config.TieWordEmbeddings);
        Assert.AreEqual("bfloat16", config.TorchDtype);
        Assert.AreEqual(128000L, config.BosTokenId);
        CollectionAssert.AreEqual(new long[] { 128001, 128008, 128009 }, config.EosTokenIds.ToArray());
        Assert.IsNull(config.PadTokenId);
        Assert.AreEqual("llama3", config.RopeScaling!.RopeType);
        Assert.AreEqual(32.0, config.RopeScaling.Factor);
        Assert.AreEqual(8192, config.RopeScaling.OriginalMaxPositionEmbeddings);
        Assert.IsFalse(config.QkvBias);
        CollectionAssert.AreEqual(new[] { "LlamaForCausalLM" }, config.Architectures.ToArray());
        Assert.IsTrue(config.ExtraFields.ContainsKey("transformers_version"));
        Assert.IsFalse(config.ExtraFields.ContainsKey("hidden_size"));
    }

    [TestMethod]
    public void Load_MinimalLlama_AppliesHuggingFaceDefaults()
    {
        using var dir = new TempFolder();
        string file = Write(dir, """{"model_type":"llama","vocab_size":100,"hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4}""");
        var config = LlamaConfig.Load(file);
        Assert.AreEqual(4, config.NumKeyValueHeads);
        Assert.AreEqual(16, config.HeadDim);
        Assert.AreEqual(1e-6, config.RmsNormEps);
        Assert.AreEqual(10000.0, config.RopeTheta);
        Assert.AreEqual(2048, config.MaxPositionEmbeddings);
        Assert.AreEqual("silu", config.HiddenAct);
        Assert.AreEqual(1L, config.BosTokenId);
        CollectionAssert.AreEqual(new long[] { 2 }, config.EosTokenIds.ToArray());
        Assert.IsNull(config.RopeScaling);
        Assert.IsNull(config.TorchDtype);
        Assert.AreEqual(file, config.SourcePath);
    }

    [TestMethod]
    public void Load_Qwen2_HasQkvBiasButNoOutputBias()
    {
        using var dir = new TempFolder();
        Write(dir, """{"model_type":"qwen2","vocab_size":100,"hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"use_sliding_window":false,"sliding_window":4096,"max_window_layers":21,"tie_word_embeddings":true}""");
        var config = LlamaConfig.Load(dir.Path);
        Assert.IsTrue(config.QkvBias);
        Assert.IsFalse(config.OutputProjectionBias);
        Assert.IsNull(config.SlidingWindow);
        Assert.IsTrue(config.TieWordEmbeddings);
    }

    [TestMethod]
    public void Load_MistralWithExplicitHeadDim_KeepsSlidingWindowAndHeadDim()
    {
        using var dir = new TempFolder();
        Write(dir, """{"model_type":"mistral","vocab_size":100,"hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":1,"head_dim":32,"sliding_window":4096}""");
        var config = LlamaConfig.Load(dir.Path);
        Assert.AreEqual(32, config.HeadDim);
        Assert.IsTrue(config.HasExplicitHeadDim);
        Assert.AreEqual(4096, config.SlidingWindow);
    }

    [TestMethod]
    public void Load_Bert_ReadsEveryField()
    {
        using var dir = new TempFolder();
        Write(dir, """
            {"architectures":["BertForMaskedLM"],"attention_probs_dropout_prob":0.1,"gradient_checkpointing":false,"hidden_act":"gelu",
             "hidden_dropout_prob":0.1,"hidden_size":768,"initializer_range":0.02,"intermediate_size":3072,"layer_norm_eps":1e-12,
             "max_position_embeddings":512,"model_type":"bert","num_attention_heads":12,"num_hidden_layers":12,"pad_token_id":0,
             "position_embedding_type":"absolute","transformers_version":"4.6.0.dev0","type_vocab_size":2,"use_cache":true,"vocab_size":30522}
            """);
        var config = BertConfig.Load(dir.Path);
        Assert.AreEqual(30522, config.VocabSize);
        Assert.AreEqual(768, config.HiddenSize);
        Assert.AreEqual(12, config.NumHiddenLayers);
        Assert.AreEqual(12, config.NumAttentionHeads);
        Assert.AreEqual(3072, config.IntermediateSize);
        Assert.AreEqual("gelu", config.HiddenAct);
        Assert.AreEqual(512, config.MaxPositionEmbeddings);
        Assert.AreEqual(2, config.TypeVocabSize);
        Assert.AreEqual(1e-12, config.LayerNormEps);
        Assert.AreEqual(0L, config.PadTokenId);
        Assert.AreEqual(64, config.HeadDim);
    }

    [TestMethod]
    public void SaveThenLoad_RoundTripsFieldsAndExtras()
    {
        using var dir = new TempFolder();
        Write(dir, Llama3Json);
        var config = LlamaConfig.Load(dir.Path);
        using var copy = new TempFolder();
        config.Save(copy.Path);
        var again = LlamaConfig.Load(copy.Path);
        Assert.AreEqual(config with { SourcePath = null, ExtraFields = again.ExtraFields }, again with { SourcePath = null, EosTokenIds = config.EosTokenIds, Architectures = config.Architectures });
        CollectionAssert.AreEqual(config.EosTokenIds.ToArray(), again.EosTokenIds.ToArray());
        Assert.AreEqual("4.45.0.dev0", again.ExtraFields["transformers_version"].GetString());
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(copy.Path, "config.json")));
        Assert.AreEqual("llama3", doc.RootElement.GetProperty("rope_scaling").GetProperty("rope_type").GetString());
    }

    [TestMethod]
    public void Save_ExistingFile_IsNotOverwrittenUnlessAsked()
    {
        using var dir = new TempFolder();
        string file = Write(dir, "{}");
        var config = new BertConfig { HiddenSize = 32, NumAttentionHeads = 4 };
        BadInput.Throws(() => config.Save(dir.Path));
        Assert.AreEqual("{}", File.ReadAllText(file));
        config.Save(dir.Path, overwrite: true);
        Assert.AreEqual(32, BertConfig.Load(file).HiddenSize);
    }

    [TestMethod]
    [DataRow("\"hidden_size\":64", "\"hidden_size\":\"64\"", "hidden_size", "\"64\"")]
    [DataRow("\"hidden_size\":64", "\"hidden_size\":64.5", "hidden_size", "64.5")]
    [DataRow("\"hidden_size\":64,", "", "hidden_size", "none")]
    [DataRow("\"num_attention_heads\":4", "\"num_attention_heads\":5", "num_attention_heads", "5")]
    [DataRow("\"num_attention_heads\":4", "\"num_attention_heads\":4,\"num_key_value_heads\":3", "num_key_value_heads", "3")]
    [DataRow("\"num_hidden_layers\":2", "\"num_hidden_layers\":0", "num_hidden_layers", "0")]
    [DataRow("\"vocab_size\":100", "\"vocab_size\":-1", "vocab_size", "-1")]
    [DataRow("\"num_attention_heads\":4", "\"num_attention_heads\":4,\"rms_norm_eps\":0", "rms_norm_eps", "0")]
    [DataRow("\"num_attention_heads\":4", "\"num_attention_heads\":4,\"rms_norm_eps\":-1e-6", "rms_norm_eps", "-1E-06")]
    [DataRow("\"num_attention_heads\":4", "\"num_attention_heads\":4,\"rope_theta\":1e999", "rope_theta", "Infinity")]
    [DataRow("\"num_attention_heads\":4", "\"num_attention_heads\":4,\"hidden_act\":\"gelu\"", "hidden_act", "\"gelu\"")]
    [DataRow("\"num_attention_heads\":4", "\"num_attention_heads\":4,\"tie_word_embeddings\":1", "tie_word_embeddings", "1")]
    [DataRow("\"num_attention_heads\":4", "\"num_attention_heads\":4,\"head_dim\":7", "head_dim", "7")]
    [DataRow("\"num_attention_heads\":4", "\"num_attention_heads\":4,\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4}", "rope_scaling.rope_type", "\"yarn\"")]
    [DataRow("\"model_type\":\"llama\"", "\"model_type\":\"gpt2\"", "model_type", "\"gpt2\"")]
    [DataRow("\"model_type\":\"llama\",", "", "model_type", "none")]
    public void Load_InvalidLlamaField_ThrowsNamingFileFieldAndValue(string replace, string with, string field, string found)
    {
        const string valid = """{"model_type":"llama","vocab_size":100,"hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4}""";
        Assert.Contains(replace, valid);
        using var dir = new TempFolder();
        string file = Write(dir, valid.Replace(replace, with, StringComparison.Ordinal));
        var ex = BadInput.Throws(() => HfConfig.Load(file));
        StringAssert.Contains(ex.Message, file);
        StringAssert.Contains(ex.Message, $"'{field}'");
        StringAssert.Contains(ex.Message, $"found {found}");
    }

    [TestMethod]
    [DataRow("\"num_attention_heads\":4", "\"num_attention_heads\":5", "num_attention_heads")]
    [DataRow("\"layer_norm_eps\":1e-12", "\"layer_norm_eps\":0", "layer_norm_eps")]
    [DataRow("\"hidden_act\":\"gelu\"", "\"hidden_act\":\"gelu_new\"", "hidden_act")]
    [DataRow("\"type_vocab_size\":2", "\"type_vocab_size\":0", "type_vocab_size")]
    [DataRow("\"layer_norm_eps\":1e-12", "\"layer_norm_eps\":1e-12,\"position_embedding_type\":\"relative_key\"", "position_embedding_type")]
    [DataRow("\"layer_norm_eps\":1e-12", "\"layer_norm_eps\":1e-12,\"hidden_dropout_prob\":1.5", "hidden_dropout_prob")]
    public void Load_InvalidBertField_ThrowsNamingField(string replace, string with, string field)
    {
        const string valid = """{"model_type":"bert","vocab_size":100,"hidden_size":64,"num_hidden_layers":2,"num_attention_heads":4,"hidden_act":"gelu","layer_norm_eps":1e-12,"type_vocab_size":2}""";
        using var dir = new TempFolder();
        string file = Write(dir, valid.Replace(replace, with, StringComparison.Ordinal));
        var ex = BadInput.Throws(() => BertConfig.Load(file));
        StringAssert.Contains(ex.Message, file);
        StringAssert.Contains(ex.Message, $"'{field}'");
    }

    [TestMethod]
    public void Load_Qwen2SlidingWindow_IsRejected()
    {
        using var dir = new TempFolder();
        Write(dir, """{"model_type":"qwen2","vocab_size":100,"hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4,"use_sliding_window":true}""");
        var ex = BadInput.Throws(() => HfConfig.Load(dir.Path));
        StringAssert.Contains(ex.Message, "use_sliding_window");
    }

    [TestMethod]
    [DataRow("not json")]
    [DataRow("[1, 2]")]
    [DataRow("")]
    public void Load_MalformedJson_IsBadInput(string content)
    {
        using var dir = new TempFolder();
        string file = Write(dir, content);
        var ex = BadInput.Throws(() => HfConfig.Load(file));
        StringAssert.Contains(ex.Message, file);
    }

    [TestMethod]
    public void Load_MissingFile_IsBadInput()
    {
        using var dir = new TempFolder();
        var ex = BadInput.Throws(() => HfConfig.Load(dir.Path));
        StringAssert.Contains(ex.Message, "config.json");
        BadInput.Throws(() => HfConfig.Load(Path.Combine(dir.Path, "missing.json")));
    }

    [TestMethod]
    public void LoadAsWrongFamily_ThrowsNamingModelType()
    {
        using var dir = new TempFolder();
        Write(dir, """{"model_type":"bert","vocab_size":100,"hidden_size":64,"num_hidden_layers":2,"num_attention_heads":4}""");
        var ex = BadInput.Throws(() => LlamaConfig.Load(dir.Path));
        StringAssert.Contains(ex.Message, "model_type");
        StringAssert.Contains(ex.Message, "\"bert\"");
    }

    [TestMethod]
    public void Validate_ConfigBuiltInCode_NamesTheRecordType()
    {
        var config = new LlamaConfig { HiddenSize = 30, NumAttentionHeads = 4 };
        var ex = BadInput.Throws(config.Validate);
        StringAssert.Contains(ex.Message, "LlamaConfig");
        StringAssert.Contains(ex.Message, "num_attention_heads");
    }
}

/// <summary>A fresh folder under the temp path, deleted on dispose.</summary>
internal sealed class TempFolder : IDisposable
{
    public TempFolder()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "onnxlora-core-hf-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
            // Best effort.
        }
    }
}
