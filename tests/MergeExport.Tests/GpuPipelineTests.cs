using System.Text.Json;

namespace OnnxLora.MergeExport.Tests;

/// <summary>
/// The whole pipeline validated on the GPU, category GPU: <c>run --device cuda --no-cpu-fallback</c> on the sample must
/// report the CUDA provider, and merged.onnx on CUDA must match the TorchSharp model on the CPU (the eager reference)
/// within 1e-3. Inconclusive, with the tool's reason, where CUDA cannot be used. On a GPU machine:
/// <c>dotnet test tests/MergeExport.Tests --filter TestCategory=GPU</c>.
/// </summary>
[TestClass]
public sealed class GpuPipelineTests
{
    [TestMethod]
    [TestCategory("GPU")]
    public void Run_OnCuda_ReportsTheCudaProviderAndMatchesTheCpuEagerModelWithin1e3()
    {
        using var dir = new TempDir();

        var (code, stdout, stderr) = CliHarness.Run("run", "--model", SampleModels.Model, "--adapter", SampleModels.Adapter, "--out", dir.File("run"),
            "--device", "cuda", "--no-cpu-fallback", "--runs", "5", "--warmup", "1", "--json");

        if (code == 2 && stderr.Contains("could not be used and CPU fallback is disabled", StringComparison.Ordinal))
        {
            Assert.Inconclusive($"GPU category: no usable CUDA provider here ({stderr.Trim().Split('\n')[0]}); "
                + "run on a machine with an NVIDIA GPU, CUDA 13 and cuDNN 9: dotnet test --filter TestCategory=GPU");
        }
        Assert.AreEqual(0, code, stderr + stdout);
        using var doc = JsonDocument.Parse(stdout);
        var details = doc.RootElement.GetProperty("details");
        Assert.AreEqual("CUDAExecutionProvider", details.GetProperty("provider").GetString());
        Assert.AreEqual(JsonValueKind.Null, details.GetProperty("fallbackReason").ValueKind);
        double gpuVsCpu = details.GetProperty("maxAbsError").GetProperty("merged vs eager").GetDouble();
        Assert.IsLessThanOrEqualTo(1e-3, gpuVsCpu, $"max |merged.onnx on CUDA − TorchSharp on CPU| = {gpuVsCpu:G3}");
        Assert.IsLessThanOrEqualTo(1e-3, details.GetProperty("maxAbsError").GetProperty("merged vs unmerged").GetDouble());
    }
}
