using OnnxLora.Core.Peft;
using OnnxLora.Models.Bert;
using OnnxLora.Models.Llama;
using OnnxLora.Models.Lora;
using OnnxLora.Training.TrainerInternals;
using static TorchSharp.torch;

namespace OnnxLora.Training.Tests;

[TestClass]
public sealed partial class TrainerTests
{
    private static readonly long[] ProbeIds = [1, 10, 11, 12, 13, 14, 3, 4];

    [ClassInitialize]
    public static void OneTorchThread(TestContext context)
    {
        // Two OpenMP threads on two shared cores under load are many times slower than one.
        set_num_threads(1);
    }

    private static TrainerOptions Quick => new()
    {
        Lora = new PeftAdapterConfig { R = 4, Alpha = 8, TargetModules = TargetModules.FromList("q_proj", "k_proj", "v_proj", "o_proj") },
        Steps = 12,
        LearningRate = 1e-2,
        BatchSize = 8,
        EvalFraction = 0.2,
        Seed = 11,
    };

    [TestMethod]
    public void Train_CountingTask_EvalLossFallsClearly()
    {
        using var dir = new TrainerTempDir();
        string model = TrainerFixtures.Llama(dir.File("model"));
        string data = TrainerFixtures.CountingData(dir.File("data.jsonl"));
        var reports = new List<TrainingProgress>();

        var result = Trainer.Train(model, data, dir.File("adapter"), Quick with { Steps = 30, Lora = Quick.Lora with { TargetModules = TargetModules.AllLinear } }, new ListProgress(reports));

        Assert.IsNotNull(result.InitialEvalLoss);
        Assert.IsNotNull(result.EvalLoss);
        Assert.IsLessThan(0.3 * result.InitialEvalLoss.Value, result.EvalLoss.Value,
            $"eval loss {result.InitialEvalLoss} → {result.EvalLoss}");
        Assert.IsLessThan(result.LossHistory.Take(3).Average(), result.LossHistory.TakeLast(3).Average());
        Assert.HasCount(30, result.LossHistory);
        Assert.AreEqual(30, result.Steps);
        Assert.AreEqual(30, reports.Count(r => !double.IsNaN(r.Loss)));
        Assert.IsTrue(reports.Where(r => !double.IsNaN(r.Loss)).All(r => r.TokensPerSecond > 0 && r.LearningRate > 0));
        Assert.IsTrue(File.Exists(Path.Combine(dir.File("adapter"), "adapter_config.json")));
        Assert.IsTrue(File.Exists(Path.Combine(dir.File("adapter"), PeftAdapter.WeightsFileName)));
    }

    [TestMethod]
    public void Train_OnlyAdapterParametersChange_BaseWeightsStayBitIdentical()
    {
        using var dir = new TrainerTempDir();
        string model = TrainerFixtures.Llama(dir.File("model"));
        string data = TrainerFixtures.CountingData(dir.File("data.jsonl"));
        Dictionary<string, byte[]>? before = null, after = null;
        HashSet<string>? optimized = null;
        var hooks = new TrainerHooks(
            Started: (m, opt) =>
            {
                before = Snapshot(m);
                optimized = opt.parameters().Select(p => p.Handle).Intersect(m.Trainable.Select(t => t.Parameter.Handle)).Select(h => h.ToString()).ToHashSet();
                Assert.AreEqual(m.Trainable.Count, opt.parameters().Count(), "the optimizer holds exactly the adapter parameters");
            },
            Finished: (m, _) => after = Snapshot(m));

        Trainer.Train(model, data, dir.File("adapter"), Quick, null, default, hooks);

        Assert.IsNotNull(before);
        Assert.IsNotNull(after);
        Assert.HasCount(16, optimized!);
        int changed = 0;
        foreach (var (name, bytes) in before)
        {
            bool isAdapter = name.Contains(".lora_", StringComparison.Ordinal);
            bool same = bytes.AsSpan().SequenceEqual(after[name]);
            if (!isAdapter)
            {
                Assert.IsTrue(same, $"base parameter {name} changed");
            }
            else if (!same)
            {
                changed++;
            }
        }
        Assert.AreEqual(16, changed, "every lora_A and lora_B (q,k,v,o × 2 layers) should move");
    }

    [TestMethod]
    public void Train_TwoMicroBatchesAccumulated_EqualsOneBatchOfTwiceTheSize()
    {
        using var dir = new TrainerTempDir();
        string model = TrainerFixtures.Llama(dir.File("model"));
        string data = TrainerFixtures.CountingData(dir.File("data.jsonl"), lines: 40);
        var options = Quick with { Steps = 3, LearningRate = 1e-3, EvalFraction = 0 };

        Trainer.Train(model, data, dir.File("a"), options with { BatchSize = 4, GradientAccumulation = 2 });
        Trainer.Train(model, data, dir.File("b"), options with { BatchSize = 8, GradientAccumulation = 1 });
        Trainer.Train(model, data, dir.File("c"), options with { BatchSize = 8, GradientAccumulation = 1, Seed = 12 });

        var a = ReadAdapter(dir.File("a"));
        var b = ReadAdapter(dir.File("b"));
        var c = ReadAdapter(dir.File("c"));
        double maxDiff = 0, maxDiffOther = 0;
        foreach (var (key, values) in a)
        {
            for (int i = 0; i < values.Length; i++)
            {
                maxDiff = Math.Max(maxDiff, Math.Abs(values[i] - b[key][i]));
                maxDiffOther = Math.Max(maxDiffOther, Math.Abs(values[i] - c[key][i]));
            }
        }
        Assert.IsLessThan(1e-5, maxDiff, $"accumulated vs single batch differ by {maxDiff}");
        Assert.IsGreaterThan(1e-3, maxDiffOther, "a different seed (other init and order) must give a clearly different adapter");
    }

    [TestMethod]
    [DoNotParallelize]
    public void Train_SameSeedTwice_GivesIdenticalAdapterBytes()
    {
        using var dir = new TrainerTempDir();
        string model = TrainerFixtures.Llama(dir.File("model"));
        string data = TrainerFixtures.CountingData(dir.File("data.jsonl"));
        var options = Quick with { Lora = Quick.Lora with { LoraDropout = 0.1 }, Steps = 6 };

        Trainer.Train(model, data, dir.File("a"), options);
        Trainer.Train(model, data, dir.File("b"), options);
        Trainer.Train(model, data, dir.File("c"), options with { Seed = 99 });

        byte[] a = File.ReadAllBytes(Path.Combine(dir.File("a"), PeftAdapter.WeightsFileName));
        byte[] b = File.ReadAllBytes(Path.Combine(dir.File("b"), PeftAdapter.WeightsFileName));
        byte[] c = File.ReadAllBytes(Path.Combine(dir.File("c"), PeftAdapter.WeightsFileName));
        CollectionAssert.AreEqual(a, b);
        CollectionAssert.AreNotEqual(a, c);
    }

    [TestMethod]
    [DoNotParallelize]
    public void Train_ResumedFromCheckpoint_EndsWithTheSameAdapterBytesAsAnUninterruptedRun()
    {
        using var dir = new TrainerTempDir();
        string model = TrainerFixtures.Llama(dir.File("model"));
        string data = TrainerFixtures.CountingData(dir.File("data.jsonl"));
        // Dropout draws from torch's generator, so the resumed run must restore its state exactly.
        var options = Quick with { Lora = Quick.Lora with { LoraDropout = 0.2 }, Steps = 7, GradientAccumulation = 2, BatchSize = 4, WarmupSteps = 2 };

        var full = Trainer.Train(model, data, dir.File("full"), options with { CheckpointEverySteps = 3, CheckpointDirectory = dir.File("ckpt") });
        string checkpoint = Path.Combine(dir.File("ckpt"), "step-000003");
        Assert.IsTrue(Directory.Exists(checkpoint));
        Assert.IsTrue(Directory.Exists(Path.Combine(dir.File("ckpt"), "step-000006")));

        var resumed = Trainer.Train(model, data, dir.File("resumed"), options with { ResumeFrom = checkpoint });

        CollectionAssert.AreEqual(
            File.ReadAllBytes(Path.Combine(dir.File("full"), PeftAdapter.WeightsFileName)),
            File.ReadAllBytes(Path.Combine(dir.File("resumed"), PeftAdapter.WeightsFileName)));
        Assert.HasCount(4, resumed.LossHistory);
        CollectionAssert.AreEqual(full.LossHistory.Skip(3).ToList(), resumed.LossHistory.ToList());
        Assert.AreEqual(full.EvalLoss, resumed.EvalLoss);
    }

    [TestMethod]
    public void Train_ResumeWithDifferentOptions_ThrowsNamingTheOption()
    {
        using var dir = new TrainerTempDir();
        string model = TrainerFixtures.Llama(dir.File("model"));
        string data = TrainerFixtures.CountingData(dir.File("data.jsonl"));
        var options = Quick with { Steps = 2, CheckpointEverySteps = 1, CheckpointDirectory = dir.File("ckpt") };
        Trainer.Train(model, data, dir.File("a"), options);

        var e = BadInput.Throws(() => Trainer.Train(model, data, dir.File("b"),
            Quick with { Steps = 2, BatchSize = 4, ResumeFrom = Path.Combine(dir.File("ckpt"), "step-000001") }));
        StringAssert.Contains(e.Message, "BatchSize: found 4, expected 8");
        Assert.IsFalse(Directory.Exists(dir.File("b")));

        // A bf16 base changes the losses: resuming an fp32 run with it is refused too.
        var bf16 = BadInput.Throws(() => Trainer.Train(model, data, dir.File("c"),
            Quick with { Steps = 2, BaseDType = Core.DType.BF16, ResumeFrom = Path.Combine(dir.File("ckpt"), "step-000001") }));
        StringAssert.Contains(bf16.Message, "BaseDType: found BF16, expected F32");
        Assert.IsFalse(Directory.Exists(dir.File("c")));
    }

    [TestMethod]
    [DataRow(false, true)]
    [DataRow(true, false)]
    public void SavedAdapter_LoadedIntoAFreshModel_GivesTheTrainedModelsOutputs(bool useDora, bool useRsLora)
    {
        using var dir = new TrainerTempDir();
        string modelDir = TrainerFixtures.Llama(dir.File("model"));
        string data = TrainerFixtures.CountingData(dir.File("data.jsonl"));
        float[]? trained = null;
        var hooks = new TrainerHooks(Finished: (m, _) => trained = Logits((LlamaForCausalLM)m.Root));
        var options = Quick with { Lora = Quick.Lora with { UseRsLora = useRsLora, UseDora = useDora, TargetModules = TargetModules.FromList("q_proj", "v_proj", "down_proj") } };

        Trainer.Train(modelDir, data, dir.File("adapter"), options, null, default, hooks);

        using var adapter = PeftAdapter.Load(dir.File("adapter"));
        Assert.AreEqual("CAUSAL_LM", adapter.Config.TaskType);
        Assert.AreEqual(4, adapter.Config.R);
        Assert.AreEqual(useRsLora, adapter.Config.UseRsLora);
        Assert.AreEqual(useDora, adapter.Config.UseDora);
        Assert.AreEqual(useDora, adapter.Weights.Tensors.Any(t => t.Name.EndsWith(".lora_magnitude_vector", StringComparison.Ordinal)));
        CollectionAssert.AreEqual(new[] { "down_proj", "q_proj", "v_proj" }, adapter.Config.TargetModules!.Names.ToArray());
        using var fresh = LlamaForCausalLM.FromPretrained(modelDir);
        LoraInjection.Apply(fresh, adapter.Config);
        LoadAdapter(fresh, adapter);
        float[] reloaded = Logits(fresh);
        using var plain = LlamaForCausalLM.FromPretrained(modelDir);
        float[] untouched = Logits(plain);

        Assert.IsNotNull(trained);
        Assert.HasCount(trained.Length, reloaded);
        double maxDiff = trained.Zip(reloaded, (x, y) => Math.Abs((double)x - y)).Max();
        double moved = trained.Zip(untouched, (x, y) => Math.Abs((double)x - y)).Max();
        Assert.IsLessThan(1e-6, maxDiff);
        Assert.IsGreaterThan(1e-3, moved, "the adapter must change the outputs");
    }

    [TestMethod]
    public void Train_BertClassification_LearnsTheLabelAndSavesTheHeadAsModulesToSave()
    {
        using var dir = new TrainerTempDir();
        string modelDir = TrainerFixtures.Bert(dir.File("model"));
        string data = TrainerFixtures.ClassificationData(dir.File("data.jsonl"));
        float[]? trained = null;
        long[] probe = [2, 9, 40, 17, 3];
        var hooks = new TrainerHooks(Finished: (m, _) =>
        {
            m.Root.eval();
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            trained = ((BertForSequenceClassification)m.Root).call(tensor(probe, [1, probe.Length]), ones(1, probe.Length, ScalarType.Int64)).data<float>().ToArray();
        });
        var options = new TrainerOptions { Lora = new PeftAdapterConfig { R = 4, Alpha = 16, TargetModules = TargetModules.FromList("query", "key", "value", "dense") }, Steps = 40, LearningRate = 1e-2, EvalFraction = 0.25, BatchSize = 8, Seed = 5 };

        var result = Trainer.Train(modelDir, data, dir.File("adapter"), options, null, default, hooks);

        Assert.IsLessThan(0.5 * result.InitialEvalLoss!.Value, result.EvalLoss!.Value, $"eval loss {result.InitialEvalLoss} → {result.EvalLoss}");
        using var adapter = PeftAdapter.Load(dir.File("adapter"));
        Assert.AreEqual("SEQ_CLS", adapter.Config.TaskType);
        CollectionAssert.AreEqual(new[] { "classifier" }, adapter.Config.ModulesToSave!.ToArray());
        var keys = adapter.Weights.Tensors.Select(t => t.Name).ToList();
        CollectionAssert.Contains(keys, "base_model.model.classifier.weight");
        CollectionAssert.Contains(keys, "base_model.model.classifier.bias");
        CollectionAssert.Contains(keys, "base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight");

        using var fresh = new BertForSequenceClassification(BertModel.FromPretrained(modelDir), 2, seed: 777);
        LoraInjection.Apply(fresh, adapter.Config);
        LoadAdapter(fresh, adapter);
        fresh.eval();
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        float[] reloaded = fresh.call(tensor(probe, [1, probe.Length]), ones(1, probe.Length, ScalarType.Int64)).data<float>().ToArray();
        Assert.IsNotNull(trained);
        for (int i = 0; i < trained.Length; i++)
        {
            Assert.AreEqual(trained[i], reloaded[i], 1e-6);
        }
    }

    [TestMethod]
    public void Train_Cancelled_ThrowsAndLeavesNoAdapterFolder()
    {
        using var dir = new TrainerTempDir();
        string model = TrainerFixtures.Llama(dir.File("model"));
        string data = TrainerFixtures.CountingData(dir.File("data.jsonl"));
        using var cts = new CancellationTokenSource();
        var progress = new CallbackProgress(p =>
        {
            if (p.Step >= 2)
            {
                cts.Cancel();
            }
        });

        Assert.ThrowsExactly<OperationCanceledException>(() =>
            Trainer.Train(model, data, dir.File("out", "adapter"), Quick with { Steps = 50 }, progress, cts.Token));

        Assert.IsFalse(Directory.Exists(dir.File("out", "adapter")));
        Assert.IsFalse(Directory.Exists(dir.File("out")) && Directory.EnumerateFileSystemEntries(dir.File("out")).Any(),
            "no partial folder may be left beside the output");
    }

    [TestMethod]
    public void Train_MoreStepsAndCheckpoints_LeaveNoMoreTorchTensorsAlive()
    {
        using var dir = new TrainerTempDir();
        string model = TrainerFixtures.Llama(dir.File("model"));
        string data = TrainerFixtures.CountingData(dir.File("data.jsonl"));
        var stats = TorchSharp.DisposeScopeManager.Statistics;
        var options = Quick with { GradientAccumulation = 2, CheckpointEverySteps = 5 };

        long start = stats.ThreadTotalLiveCount;
        Trainer.Train(model, data, dir.File("a"), options with { Steps = 2, CheckpointDirectory = dir.File("ckpt-a") });
        long afterShort = stats.ThreadTotalLiveCount;
        Trainer.Train(model, data, dir.File("b"), options with { Steps = 12, CheckpointDirectory = dir.File("ckpt-b") });
        long afterLong = stats.ThreadTotalLiveCount;
        Trainer.Train(model, data, dir.File("c"), options with { Steps = 12, CheckpointEverySteps = 0, ResumeFrom = Path.Combine(dir.File("ckpt-b"), "step-000005") });
        long afterResume = stats.ThreadTotalLiveCount;

        // Whatever a run leaves alive (LoRA injection leaves one wrapper per adapted module today) must not
        // grow with the number of steps, checkpoints or a resume: every per-step tensor is disposed.
        long perRun = afterShort - start;
        Assert.AreEqual(perRun, afterLong - afterShort, $"live tensors: short run +{perRun}, long run +{afterLong - afterShort}");
        Assert.AreEqual(perRun, afterResume - afterLong, $"live tensors: short run +{perRun}, resumed run +{afterResume - afterLong}");
    }

    [TestMethod]
    public void Train_OutputExists_ThrowsBeforeTrainingUnlessOverwrite()
    {
        using var dir = new TrainerTempDir();
        string model = TrainerFixtures.Llama(dir.File("model"));
        string data = TrainerFixtures.CountingData(dir.File("data.jsonl"));
        Directory.CreateDirectory(dir.File("adapter"));
        File.WriteAllText(Path.Combine(dir.File("adapter"), "keep.txt"), "x");

        var e = BadInput.Throws(() => Trainer.Train(model, data, dir.File("adapter"), Quick with { Steps = 1 }));
        StringAssert.Contains(e.Message, dir.File("adapter"));
        Assert.IsTrue(File.Exists(Path.Combine(dir.File("adapter"), "keep.txt")));

        Trainer.Train(model, data, dir.File("adapter"), Quick with { Steps = 1, Overwrite = true });
        Assert.IsFalse(File.Exists(Path.Combine(dir.File("adapter"), "keep.txt")));
        Assert.IsTrue(File.Exists(Path.Combine(dir.File("adapter"), PeftAdapter.WeightsFileName)));
    }

    [TestMethod]
    public void Train_DataWithABadLine_ThrowsNamingFileAndLine()
    {
        using var dir = new TrainerTempDir();
        string model = TrainerFixtures.Llama(dir.File("model"));
        string data = dir.File("bad.jsonl");
        File.WriteAllText(data, "{\"input_ids\": [1, 2, 3]}\n{\"input_ids\": [1, 64]}\n");
        var e = BadInput.Throws(() => Trainer.Train(model, data, dir.File("adapter"), Quick));
        StringAssert.Contains(e.Message, data + ": line 2");
        StringAssert.Contains(e.Message, "[0, 64)");
    }

    private static Dictionary<string, byte[]> Snapshot(TaskModel m) =>
        m.Root.named_parameters().ToDictionary(p => p.name, p => AdapterFiles.Bytes(p.parameter));

    private static Dictionary<string, float[]> ReadAdapter(string folder)
    {
        using var adapter = PeftAdapter.Load(folder);
        return adapter.Weights.Tensors.ToDictionary(t => t.Name, t => adapter.Weights.ReadSingles(t));
    }

    private static void LoadAdapter(TorchSharp.torch.nn.Module model, PeftAdapter adapter)
    {
        using var scope = NewDisposeScope();
        var tensors = adapter.Weights.Tensors.ToDictionary(t => t.Name, t => tensor(adapter.Weights.ReadSingles(t), t.Shape.ToArray()));
        LoraAdapterState.Load(model, tensors, adapter.Weights.Path);
    }

    private static float[] Logits(LlamaForCausalLM model)
    {
        model.eval();
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        return model.call(tensor(ProbeIds, [1, ProbeIds.Length]), ones(1, ProbeIds.Length, ScalarType.Int64)).data<float>().ToArray();
    }

    private sealed class ListProgress(List<TrainingProgress> list) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => list.Add(value);
    }

    private sealed class CallbackProgress(Action<TrainingProgress> action) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => action(value);
    }
}
