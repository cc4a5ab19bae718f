using OnnxLora.Core.Peft;
using OnnxLora.Models.Bert;
using OnnxLora.Models.Llama;
using OnnxLora.Models.Lora;
using static TorchSharp.torch;

namespace OnnxLora.Models.Tests.Lora;

[TestClass]
public sealed class LoraTrainingStepTests
{
    private static readonly long[] Tokens = [1, 5, 9, 33, 2, 60, 7, 7, 12, 40, 41, 3];

    private static Tensor NextTokenLoss(LlamaForCausalLM model)
    {
        var ids = tensor(Tokens, [2, 6]);
        var logits = model.forward(ids, null);
        var predicted = logits.narrow(1, 0, 5).reshape(-1, 64);
        var targets = ids.narrow(1, 1, 5).reshape(-1);
        return nn.functional.cross_entropy(predicted, targets);
    }

    [TestMethod]
    public void Backward_ThroughInjectedLlama_ReachesOnlyAdapters()
    {
        using var model = LlamaForCausalLM.CreateRandom(TinyConfigs.Llama(), seed: 2, std: 0.2);
        LoraInjection.Apply(model, new PeftAdapterConfig { TargetModules = TargetModules.AllLinear, R = 2, LoraDropout = 0.1, UseDora = true, ModulesToSave = ["lm_head"] });
        model.train();
        using (var scope = NewDisposeScope())
        {
            NextTokenLoss(model).backward();
        }
        foreach (var (name, p) in model.named_parameters())
        {
            if (!p.requires_grad)
            {
                Assert.IsNull(p.grad, $"{name} is frozen and must get no gradient");
            }
            else if (name.EndsWith("lora_B.weight", StringComparison.Ordinal) || name.EndsWith("lora_magnitude_vector", StringComparison.Ordinal) || name == "lm_head.weight")
            {
                Assert.IsNotNull(p.grad, name);
                Assert.IsGreaterThan(0.0, p.grad.abs().max().item<float>(), $"{name} gradient");
            }
        }
    }

    [TestMethod]
    public void AdamSteps_OnLlamaAdapters_LowerTheLossAndKeepBaseWeights()
    {
        using var model = LlamaForCausalLM.CreateRandom(TinyConfigs.Llama(), seed: 2, std: 0.2);
        LoraInjection.Apply(model, new PeftAdapterConfig { TargetModules = TargetModules.FromList("q_proj", "v_proj", "down_proj"), R = 4, Alpha = 8 });
        var frozen = model.named_parameters().Where(p => !p.parameter.requires_grad).ToDictionary(p => p.name, p => p.parameter.data<float>().ToArray());
        using var optimizer = optim.Adam(LoraInjection.TrainableParameters(model).Select(p => p.Parameter), lr: 0.01);
        model.train();
        double first = 0, last = 0;
        for (int step = 0; step < 30; step++)
        {
            using var scope = NewDisposeScope();
            optimizer.zero_grad();
            var loss = NextTokenLoss(model);
            loss.backward();
            optimizer.step();
            if (step == 0)
            {
                first = loss.item<float>();
            }
            last = loss.item<float>();
        }
        Assert.IsLessThan(first * 0.8, last, $"loss went from {first} to {last}");
        foreach (var (name, p) in model.named_parameters().Where(p => !p.parameter.requires_grad))
        {
            CollectionAssert.AreEqual(frozen[name], p.data<float>().ToArray(), name);
        }
    }

    [TestMethod]
    public void AdamSteps_OnBertAdapters_LowerTheLoss()
    {
        using var model = BertModel.CreateRandom(TinyConfigs.Bert(), seed: 3, std: 0.1);
        LoraInjection.Apply(model, new PeftAdapterConfig { TargetModules = TargetModules.FromList("query", "value", "word_embeddings"), R = 4, Alpha = 8, LoraDropout = 0.1 });
        using var optimizer = optim.Adam(LoraInjection.TrainableParameters(model).Select(p => p.Parameter), lr: 0.02);
        using var target = ones(2, 6, 32) * 0.5;
        model.train();
        double first = 0, last = 0;
        for (int step = 0; step < 30; step++)
        {
            using var scope = NewDisposeScope();
            optimizer.zero_grad();
            var output = model.forward(tensor(Tokens, [2, 6]), tensor(new long[] { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0 }, [2, 6]));
            var loss = (output - target).pow(2).mean();
            loss.backward();
            optimizer.step();
            if (step == 0)
            {
                first = loss.item<float>();
            }
            last = loss.item<float>();
        }
        Assert.IsLessThan(first * 0.9, last, $"loss went from {first} to {last}");
    }
}
