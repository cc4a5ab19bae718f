using System.Globalization;
using System.Text.Json;
using OnnxLora.Core;
using OnnxLora.Core.IO;
using TorchSharp.Modules;

namespace OnnxLora.Training.TrainerInternals;

/// <summary>
/// What a resumed run must agree on with the run that wrote the checkpoint, plus where it stopped.
/// The data order is a function of (seed, epoch), so the step number fixes the next batch.
/// </summary>
internal sealed record TrainerState
{
    public int Step { get; init; }
    public int TotalSteps { get; init; }
    public int Seed { get; init; }
    public int BatchSize { get; init; }
    public int GradientAccumulation { get; init; }
    public int TrainExamples { get; init; }
    public int EvalExamples { get; init; }
    public int Rank { get; init; }
    public double Alpha { get; init; }
    public double LearningRate { get; init; }
    public int WarmupSteps { get; init; }
    public string TargetModules { get; init; } = "";

    /// <summary>How the frozen base weights were stored (<see cref="TrainerOptions.BaseDType"/>): it changes the losses, so a
    /// resumed run must use the same. Checkpoints written before the option existed have none and were fp32.</summary>
    public string BaseDType { get; init; } = nameof(DType.F32);
    public byte[] RngState { get; init; } = [];
    public IReadOnlyList<double> LossHistory { get; init; } = [];

    /// <summary>Fields (name, value) that must match between the checkpoint and the resuming run.</summary>
    public IEnumerable<(string Name, string Value)> Identity()
    {
        var c = CultureInfo.InvariantCulture;
        yield return ("Seed", Seed.ToString(c));
        yield return ("total steps (Steps or Epochs)", TotalSteps.ToString(c));
        yield return ("BatchSize", BatchSize.ToString(c));
        yield return ("GradientAccumulation", GradientAccumulation.ToString(c));
        yield return ("training examples (data file, EvalFraction)", TrainExamples.ToString(c));
        yield return ("held-out examples (data file, EvalFraction)", EvalExamples.ToString(c));
        yield return ("Rank", Rank.ToString(c));
        yield return ("Alpha", Alpha.ToString("R", c));
        yield return ("LearningRate", LearningRate.ToString("R", c));
        yield return ("WarmupSteps", WarmupSteps.ToString(c));
        yield return ("Targets", TargetModules);
        yield return ("BaseDType", BaseDType);
    }
}

/// <summary>
/// A resumable checkpoint folder "step-NNNNNN": the adapter as a PEFT folder "adapter" (usable on its own),
/// the optimizer state (TorchSharp's format), and trainer_state.json (step, run identity, the torch
/// generator state, the loss history). Written atomically.
/// </summary>
internal static class TrainerCheckpoint
{
    public const string StateFileName = "trainer_state.json";
    public const string OptimizerFileName = "optimizer.bin";
    public const string AdapterFolderName = "adapter";
    private const string Format = "onnxlora-trainer-state";

    public static string FolderName(int step) => string.Create(CultureInfo.InvariantCulture, $"step-{step:D6}");

    public static string Save(string root, TaskModel model, AdamW optimizer, TrainerState state)
    {
        string final = Path.Combine(Path.GetFullPath(root), FolderName(state.Step));
        using var folder = AtomicDirectory.Create(final, overwrite: true);
        AdapterFiles.Save(Path.Combine(folder.TempPath, AdapterFolderName), model.AdapterConfig, model.Trainable, overwrite: false);
        using (var stream = File.Create(Path.Combine(folder.TempPath, OptimizerFileName)))
        using (var writer = new BinaryWriter(stream))
        {
            optimizer.save_state_dict(writer);
        }
        File.WriteAllBytes(Path.Combine(folder.TempPath, StateFileName), StateJson(state));
        folder.Commit();
        return final;
    }

    /// <summary>Reads trainer_state.json of a checkpoint folder.</summary>
    public static TrainerState ReadState(string folder)
    {
        string path = Path.Combine(Path.GetFullPath(folder), StateFileName);
        if (!Directory.Exists(folder))
        {
            throw OnnxLoraException.NotFound("checkpoint folder", Path.GetFullPath(folder));
        }
        if (!File.Exists(path))
        {
            throw OnnxLoraException.Invalid(path, "not found; expected a checkpoint folder written by the trainer.");
        }
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
            var r = doc.RootElement;
            string format = r.GetProperty("format").GetString() ?? "";
            if (format != Format)
            {
                throw OnnxLoraException.Invalid(path, "format", $"\"{format}\"", $"\"{Format}\"");
            }
            return new TrainerState
            {
                Step = r.GetProperty("step").GetInt32(),
                TotalSteps = r.GetProperty("total_steps").GetInt32(),
                Seed = r.GetProperty("seed").GetInt32(),
                BatchSize = r.GetProperty("batch_size").GetInt32(),
                GradientAccumulation = r.GetProperty("gradient_accumulation").GetInt32(),
                TrainExamples = r.GetProperty("train_examples").GetInt32(),
                EvalExamples = r.GetProperty("eval_examples").GetInt32(),
                Rank = r.GetProperty("rank").GetInt32(),
                Alpha = r.GetProperty("alpha").GetDouble(),
                LearningRate = r.GetProperty("learning_rate").GetDouble(),
                WarmupSteps = r.GetProperty("warmup_steps").GetInt32(),
                TargetModules = r.GetProperty("target_modules").GetString() ?? "",
                BaseDType = r.TryGetProperty("base_dtype", out var baseDType) ? baseDType.GetString() ?? "" : nameof(DType.F32),
                RngState = r.GetProperty("rng_state").GetBytesFromBase64(),
                LossHistory = [.. r.GetProperty("loss_history").EnumerateArray().Select(e => e.GetDouble())],
            };
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw OnnxLoraException.Invalid(path, $"malformed trainer state ({e.Message}).", e);
        }
    }

    /// <summary>Loads the adapter and optimizer state of <paramref name="folder"/> into the run.</summary>
    public static void LoadInto(string folder, TaskModel model, AdamW optimizer)
    {
        folder = Path.GetFullPath(folder);
        AdapterFiles.LoadInto(Path.Combine(folder, AdapterFolderName), model);
        string path = Path.Combine(folder, OptimizerFileName);
        if (!File.Exists(path))
        {
            throw OnnxLoraException.NotFound("optimizer state", path);
        }
        try
        {
            using var stream = File.OpenRead(path);
            using var reader = new BinaryReader(stream);
            optimizer.load_state_dict(reader);
            if (stream.Position != stream.Length)
            {
                throw OnnxLoraException.Invalid(path, "length", $"{stream.Length} bytes", $"{stream.Position} (trailing data)");
            }
        }
        catch (Exception e) when (e is EndOfStreamException or ArgumentException or IOException and not FileNotFoundException)
        {
            throw OnnxLoraException.Invalid(path, $"optimizer state does not match this run's adapter ({e.Message}).", e);
        }
    }

    private static byte[] StateJson(TrainerState s)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteString("format", Format);
            w.WriteNumber("version", 1);
            w.WriteNumber("step", s.Step);
            w.WriteNumber("total_steps", s.TotalSteps);
            w.WriteNumber("seed", s.Seed);
            w.WriteNumber("batch_size", s.BatchSize);
            w.WriteNumber("gradient_accumulation", s.GradientAccumulation);
            w.WriteNumber("train_examples", s.TrainExamples);
            w.WriteNumber("eval_examples", s.EvalExamples);
            w.WriteNumber("rank", s.Rank);
            w.WriteNumber("alpha", s.Alpha);
            w.WriteNumber("learning_rate", s.LearningRate);
            w.WriteNumber("warmup_steps", s.WarmupSteps);
            w.WriteString("target_modules", s.TargetModules);
            w.WriteString("base_dtype", s.BaseDType);
            w.WriteBase64String("rng_state", s.RngState);
            w.WriteStartArray("loss_history");
            foreach (double l in s.LossHistory)
            {
                w.WriteNumberValue(l);
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        buffer.WriteByte((byte)'\n');
        return buffer.ToArray();
    }
}
