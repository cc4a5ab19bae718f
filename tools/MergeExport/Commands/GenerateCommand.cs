using System.CommandLine;
using System.Globalization;
using Microsoft.ML.OnnxRuntimeGenAI;
using OnnxLora.Generate;
using OnnxLora.MergeExport.Internals;
using OnnxLora.Training.Data;

namespace OnnxLora.MergeExport.Commands;

/// <summary>
/// <c>generate</c>: prompt in, text out, streamed token by token, from an ONNX Runtime GenAI folder (<c>--genai</c>,
/// as <c>export --genai</c> writes it) or from a checkpoint with the TorchSharp model (<c>--model</c>, optionally
/// <c>--adapter</c>, attached unmerged; with its own key/value cache: the prompt once, then one token per step).
/// </summary>
internal sealed class GenerateCommand : CliCommand
{
    private static readonly Lazy<OgaHandle> GenAiHandle = new(() =>
    {
        // GenAI wants its handle disposed once, at the end of the process (OgaShutdown).
        var handle = new OgaHandle();
        AppDomain.CurrentDomain.ProcessExit += (_, _) => handle.Dispose();
        return handle;
    });

    private readonly Option<string> _genai = new("--genai") { Description = "ONNX Runtime GenAI model folder (merge-export export --genai)." };
    private readonly Option<string> _model = new("--model") { Description = "Or: a decoder checkpoint folder, run with TorchSharp (fp32, with a key/value cache)." };
    private readonly Option<string> _adapter = new("--adapter") { Description = "With --model: a PEFT adapter folder to attach." };
    private readonly Option<string> _onnxAdapter = new("--onnx-adapter")
    {
        Description = "With --genai: an ONNX Runtime adapter file (.onnx_adapter) to activate, loaded through GenAI's Adapters API (folders from export --genai DIR --mode adapters).",
    };
    private readonly Option<string> _prompt = new("--prompt") { Description = "The text to continue.", Required = true };
    private readonly Option<int> _maxNewTokens = new("--max-new-tokens") { Description = "Most new tokens; generation also stops at end of sequence or the context length.", DefaultValueFactory = _ => 32 };
    private readonly Option<double?> _temperature = new("--temperature") { Description = "Sample with this temperature (> 0) instead of greedy." };
    private readonly Option<int?> _topK = new("--top-k") { Description = "Sample among the k most likely tokens." };
    private readonly Option<double?> _topP = new("--top-p") { Description = "Sample among the most likely tokens reaching probability p (0 < p ≤ 1)." };
    private readonly Option<int> _seed = new("--seed") { Description = "Seed of the sampler.", DefaultValueFactory = _ => 0 };

    public GenerateCommand(CliContext context)
        : base("generate", "Continue a prompt, streamed token by token: from a GenAI folder (ONNX Runtime GenAI) or a checkpoint (TorchSharp). Greedy unless a sampling option is given.", context)
    {
        foreach (Option o in new Option[] { _genai, _model, _adapter, _onnxAdapter, _prompt, _maxNewTokens, _temperature, _topK, _topP, _seed })
        {
            Options.Add(o);
        }
        Validators.Add(r =>
        {
            if ((r.GetValue(_genai) is null) == (r.GetValue(_model) is null))
            {
                r.AddError("give exactly one of --genai (a GenAI model folder) and --model (a checkpoint folder).");
            }
            if (r.GetValue(_adapter) is not null && r.GetValue(_model) is null)
            {
                r.AddError("--adapter goes with --model (a GenAI folder already holds its adapter, or takes --onnx-adapter).");
            }
            if (r.GetValue(_onnxAdapter) is not null && r.GetValue(_genai) is null)
            {
                r.AddError("--onnx-adapter goes with --genai (a folder exported with --mode adapters).");
            }
        });
    }

    protected override int Execute(ParseResult parse)
    {
        var options = new GenerationOptions
        {
            MaxNewTokens = parse.GetValue(_maxNewTokens),
            Temperature = parse.GetValue(_temperature),
            TopK = parse.GetValue(_topK),
            TopP = parse.GetValue(_topP),
            Seed = parse.GetValue(_seed),
        };
        options.Validate();
        string? genai = parse.GetValue(_genai);
        using ITextGenerator generator = genai is not null ? OpenGenAi(genai, parse.GetValue(_onnxAdapter)) : LoadEager(parse.GetValue(_model)!, parse.GetValue(_adapter));
        var prompt = generator.Encode(parse.GetValue(_prompt)!);
        Action<string>? stream = Context.Json ? null : piece =>
        {
            Context.Out.Write(piece);
            Context.Out.Flush();
        };
        var result = generator.Generate(prompt, options, stream);
        if (Context.Json)
        {
            var perToken = result.TokenMs.Order().ToArray();
            Context.Out.WriteLine(new CommandResult("generate", "passed")
            {
                Details =
                {
                    ["backend"] = genai is not null ? "onnxruntime-genai" : "torchsharp-eager",
                    ["promptTokens"] = result.PromptTokens,
                    ["tokens"] = result.Tokens,
                    ["text"] = result.Text,
                    ["timeToFirstTokenMs"] = result.TimeToFirstTokenMs,
                    ["tokenMs"] = result.TokenMs,
                    ["tokenMsMedian"] = perToken.Length == 0 ? null : perToken[perToken.Length / 2],
                    ["tokensPerSecond"] = perToken.Length == 0 ? null : perToken.Length / (perToken.Sum() / 1000.0),
                },
            }.ToJson());
        }
        else
        {
            Context.Out.WriteLine();
            Context.Info(string.Create(CultureInfo.InvariantCulture,
                $"{result.Tokens.Count} tokens; first after {result.TimeToFirstTokenMs:F1} ms (prompt of {result.PromptTokens.Count}), then {(result.TokenMs.Count == 0 ? 0 : result.TokenMs.Average()):F2} ms per token"));
        }
        return Cli.Success;
    }

    /// <summary>Opens a GenAI folder, starting GenAI's process-wide handle the first time; with <paramref name="onnxAdapter"/>, that adapter is active.</summary>
    internal static GenAiGenerator OpenGenAi(string folder, string? onnxAdapter = null)
    {
        _ = GenAiHandle.Value;
        var generator = GenAiGenerator.Open(folder);
        if (onnxAdapter is null)
        {
            return generator;
        }
        try
        {
            string name = Path.GetFileNameWithoutExtension(onnxAdapter);
            generator.LoadAdapter(onnxAdapter, name);
            generator.ActiveAdapter = name;
            return generator;
        }
        catch
        {
            generator.Dispose();
            throw;
        }
    }

    private static EagerGenerator LoadEager(string modelDir, string? adapterDir)
    {
        var loaded = LoadedModel.Load(modelDir, adapterDir);
        try
        {
            var decoder = ExportCommand.Decoder(loaded.Module, "--model");
            decoder.eval();
            return new EagerGenerator(decoder, CheckpointTokenizer.Exists(modelDir) ? CheckpointTokenizer.Load(modelDir) : null, ownsModel: true);
        }
        catch
        {
            loaded.Dispose();
            throw;
        }
    }
}
