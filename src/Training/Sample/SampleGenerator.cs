using System.Reflection;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using OnnxLora.Core;
using OnnxLora.Core.HuggingFace;
using OnnxLora.Core.IO;
using OnnxLora.Models.Llama;
using OnnxLora.Training.Data;
using OnnxLora.Training.Sample.Internals;

namespace OnnxLora.Training.Sample;

/// <summary>
/// The project's own small LLaMA-family checkpoint, made by code: a byte-level BPE tokenizer learned
/// from templated English sentences, a tiny decoder pretrained briefly on them, and a task data set
/// (task.jsonl: active sentence → passive rewrite) on which a LoRA adapter visibly lowers the loss.
/// </summary>
/// <remarks>
/// <see cref="Generate(string, SampleOptions, bool, IProgress{string}?)"/> rebuilds the files; with the
/// same options it gives the same bytes on the same machine (pretraining is floating-point work, so
/// model.safetensors may differ in the last bits on another CPU). Pretraining runs on one torch
/// thread (set for its duration, then restored), so the caller's thread setting does not change the bytes.
/// <see cref="WriteEmbedded"/> writes the copy committed under models/tiny-llama, which is embedded in
/// this assembly; that is what <c>merge-export sample</c> writes.
/// </remarks>
public static class SampleGenerator
{
    /// <summary>The seed of the committed sample.</summary>
    public const int DefaultSeed = 1234;

    /// <summary>The committed sample's folder name under models/.</summary>
    public const string DefaultName = "tiny-llama";

    /// <summary>The task data file inside the sample folder.</summary>
    public const string TaskFileName = "task.jsonl";

    private const string ResourcePrefix = "OnnxLora.Sample.tiny-llama.";

    /// <summary>The files a sample folder holds.</summary>
    public static IReadOnlyList<string> FileNames { get; } =
        ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", TaskFileName];

    /// <summary>Builds the sample with default options and <paramref name="seed"/> into <paramref name="directory"/>.</summary>
    public static void Generate(string directory, int seed = DefaultSeed, bool overwrite = false) =>
        Generate(directory, new SampleOptions { Seed = seed }, overwrite);

    /// <summary>Builds the sample into <paramref name="directory"/>, which appears only when complete.</summary>
    /// <exception cref="OnnxLoraException">Bad input: the folder exists and <paramref name="overwrite"/> is false.</exception>
    public static void Generate(string directory, SampleOptions options, bool overwrite = false, IProgress<string>? log = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        using var folder = AtomicDirectory.Create(directory, overwrite);
        var corpus = SampleText.Corpus(options.Seed, options.CorpusSentences);
        var task = SampleText.Task(options.Seed, options.TaskLines);
        var merges = BpeTrainer.Train(corpus.Concat(task), options.MaxVocabSize - SampleTokenizerFiles.VocabSize(0));
        int vocabSize = SampleTokenizerFiles.VocabSize(merges.Count);
        log?.Report($"tokenizer: {merges.Count} merges, vocabulary {vocabSize}");
        File.WriteAllBytes(Path.Combine(folder.TempPath, CheckpointTokenizer.FileName), SampleTokenizerFiles.TokenizerJson(merges));
        File.WriteAllBytes(Path.Combine(folder.TempPath, "tokenizer_config.json"), SampleTokenizerFiles.TokenizerConfigJson(SamplePretraining.MaxLength));
        File.WriteAllBytes(Path.Combine(folder.TempPath, TaskFileName), TaskJsonl(task));

        var tokenizer = CheckpointTokenizer.Load(folder.TempPath);
        var sequences = corpus.Select(s => tokenizer.Encode(s, SamplePretraining.MaxLength)).ToList();
        var config = new LlamaConfig
        {
            VocabSize = vocabSize,
            HiddenSize = options.HiddenSize,
            IntermediateSize = options.IntermediateSize,
            NumHiddenLayers = options.Layers,
            NumAttentionHeads = options.Heads,
            NumKeyValueHeads = options.KeyValueHeads,
            MaxPositionEmbeddings = SamplePretraining.MaxLength,
            RmsNormEps = 1e-5,
            RopeTheta = 10000,
            TieWordEmbeddings = false,
            BosTokenId = SampleTokenizerFiles.BosId,
            EosTokenIds = [SampleTokenizerFiles.EosId],
            PadTokenId = SampleTokenizerFiles.PadId,
            Architectures = ["LlamaForCausalLM"],
            TorchDtype = "float32",
        };
        int threads = TorchSharp.torch.get_num_threads();
        TorchSharp.torch.set_num_threads(1);
        try
        {
            using var model = LlamaForCausalLM.CreateRandom(config, options.Seed);
            SamplePretraining.Run(model, sequences, options, log);
            model.SaveCheckpoint(folder.TempPath, DType.F32, overwrite: true);
        }
        finally
        {
            TorchSharp.torch.set_num_threads(threads);
        }
        folder.Commit();
    }

    /// <summary>Writes the committed sample (embedded in this assembly) into <paramref name="directory"/>, atomically.</summary>
    /// <exception cref="OnnxLoraException">Bad input: the folder exists and <paramref name="overwrite"/> is false.</exception>
    public static void WriteEmbedded(string directory, bool overwrite = false)
    {
        using var folder = AtomicDirectory.Create(directory, overwrite);
        var assembly = typeof(SampleGenerator).Assembly;
        foreach (string name in FileNames)
        {
            using var source = OpenEmbedded(assembly, name);
            using var target = File.Create(Path.Combine(folder.TempPath, name));
            source.CopyTo(target);
        }
        folder.Commit();
    }

    /// <summary>The bytes of one committed sample file (one of <see cref="FileNames"/>).</summary>
    public static byte[] ReadEmbedded(string fileName)
    {
        using var source = OpenEmbedded(typeof(SampleGenerator).Assembly, fileName);
        using var buffer = new MemoryStream();
        source.CopyTo(buffer);
        return buffer.ToArray();
    }

    private static Stream OpenEmbedded(Assembly assembly, string name) =>
        assembly.GetManifestResourceStream(ResourcePrefix + name)
            ?? throw Core.OnnxLoraException.Internal(assembly.GetName().Name ?? "", $"embedded sample file '{name}' is missing (models/{DefaultName} was not embedded at build time).");

    private static byte[] TaskJsonl(IEnumerable<string> lines)
    {
        var sb = new StringBuilder();
        var options = new JsonSerializerOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
        foreach (string line in lines)
        {
            sb.Append("{\"text\": ").Append(JsonSerializer.Serialize(line, options)).Append("}\n");
        }
        return Encoding.UTF8.GetBytes(sb.ToString());
    }
}
