using System.Text;
using OnnxLora.Core;
using OnnxLora.Core.Peft;
using OnnxLora.Core.Safetensors;

namespace OnnxLora.Fuzz.Tests;

[TestClass]
public sealed class PeftAdapterFuzzTests
{
    public TestContext TestContext { get; set; } = null!;

    private static byte[] _config = [];
    private static byte[] _weights = [];

    [ClassInitialize]
    public static void MakeValidAdapter(TestContext _)
    {
        string dir = Path.Combine(Path.GetTempPath(), "onnxlora-fuzz-src-" + Guid.NewGuid().ToString("N"));
        var config = new PeftAdapterConfig
        {
            R = 2,
            Alpha = 4,
            TargetModules = TargetModules.FromList(["q_proj", "v_proj"]),
            RankPattern = new OrderedDictionary<string, int> { ["v_proj"] = 1 },
        };
        var rng = new Random(5);
        float[] Values(int n) => Enumerable.Range(0, n).Select(_ => (float)rng.NextDouble()).ToArray();
        var tensors = new List<(TensorSpec, ReadOnlyMemory<byte>)>
        {
            PeftAdapter.EncodeTensor("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", [2, 8], Values(16)),
            PeftAdapter.EncodeTensor("base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", [8, 2], Values(16)),
            PeftAdapter.EncodeTensor("base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight", [1, 8], Values(8), DType.BF16),
            PeftAdapter.EncodeTensor("base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight", [4, 1], Values(4), DType.F16),
        };
        PeftAdapter.Save(dir, config, tensors);
        _config = File.ReadAllBytes(Path.Combine(dir, PeftAdapterConfig.FileName));
        _weights = File.ReadAllBytes(Path.Combine(dir, PeftAdapter.WeightsFileName));
        using (var check = PeftAdapter.Load(dir))
        {
            Assert.HasCount(2, check.Modules, "the valid adapter must load before it is mutated");
        }
        Directory.Delete(dir, recursive: true);
    }

    private static void Open(string dir)
    {
        using var adapter = PeftAdapter.Load(dir);
        foreach (var module in adapter.Modules)
        {
            _ = adapter.Config.ScalingFor(module.ModulePath);
        }
    }

    /// <summary>
    /// Loads the adapter and computes every module's scaling. Documented for a malformed adapter:
    /// bad-input OnnxLoraException (PeftAdapter.Load: anything malformed or inconsistent). Load's
    /// DirectoryNotFoundException and FileNotFoundException cannot happen here (both files are written), so
    /// they fail the campaign like any other exception.
    /// </summary>
    private static FuzzTarget ConfigTarget() => new("adapter_config.json", _config, PeftAdapterConfig.FileName,
        dir => File.WriteAllBytes(Path.Combine(dir, PeftAdapter.WeightsFileName), _weights), Open, [typeof(OnnxLoraException)]);

    /// <summary>As <see cref="ConfigTarget"/>, mutating adapter_model.safetensors beside a valid config.</summary>
    private static FuzzTarget WeightsTarget() => new("adapter_model.safetensors", _weights, PeftAdapter.WeightsFileName,
        dir => File.WriteAllBytes(Path.Combine(dir, PeftAdapterConfig.FileName), _config), Open, [typeof(OnnxLoraException)]);

    [TestMethod]
    public void MutatedAdapterConfig_FixedCorpus_Reproduces() => CampaignAssert.CorpusReproduces(ConfigTarget(), TestContext);

    [TestMethod]
    public void MutatedAdapterConfig_EitherLoadsOrRaisesBadInput_InBoundedMemory()
    {
        CampaignAssert.TimedCampaignStaysInBounds(ConfigTarget(), TestContext);
        TestContext.WriteLine(Encoding.UTF8.GetString(_config));
    }

    [TestMethod]
    public void MutatedAdapterWeights_FixedCorpus_Reproduces() => CampaignAssert.CorpusReproduces(WeightsTarget(), TestContext);

    [TestMethod]
    public void MutatedAdapterWeights_EitherLoadOrRaiseInvalidData_InBoundedMemory() => CampaignAssert.TimedCampaignStaysInBounds(WeightsTarget(), TestContext);
}
