using Microsoft.ML.OnnxRuntime;
using OnnxLora.Core;

namespace OnnxLora.Validate.Tests;

/// <summary>
/// The CUDA path, category GPU: asserts that the sessions ran on the CUDA execution provider and that the merged
/// model's outputs there match ONNX Runtime's CPU provider on the same inputs within 1e-3 (absolute). Where CUDA
/// cannot be used (no GPU, no CUDA 13 / cuDNN 9 libraries) the test is Inconclusive with ONNX Runtime's reason.
/// Run it on a GPU machine with <c>dotnet test tests/Validate.Tests --filter TestCategory=GPU</c> (or the whole
/// solution's GPU category: <c>dotnet test OnnxLora.sln --filter TestCategory=GPU</c>).
/// </summary>
[TestClass]
public sealed class GpuTests
{
    /// <summary>|GPU − CPU| allowed on logits of magnitude ~10: fp32 kernels that sum in another order, not TF32-sized errors.</summary>
    internal const double GpuCpuTolerance = 1e-3;

    [TestMethod]
    [TestCategory("GPU")]
    public void Run_OnCuda_UsesTheCudaProviderAndMatchesTheCpuProviderWithin1e3()
    {
        using var f = new TestFiles(vocab: 512, hidden: 256, rank: 8, seed: 9);
        string merged = f.Merged();
        string unmerged = f.Unmerged();
        using var cpuOptions = new SessionOptions { LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR, IntraOpNumThreads = 1 };
        using var cpu = new InferenceSession(merged, cpuOptions);
        int calls = 0;
        IReadOnlyDictionary<string, float[]> OnCpu(IReadOnlyDictionary<string, InputTensor> inputs)
        {
            calls++;
            using var ids = OrtValue.CreateTensorValueFromMemory(inputs["input_ids"].GetData<long>().ToArray(), [.. inputs["input_ids"].Shape]);
            using var mask = OrtValue.CreateTensorValueFromMemory(inputs["attention_mask"].GetData<long>().ToArray(), [.. inputs["attention_mask"].Shape]);
            using var runOptions = new RunOptions();
            using var outputs = cpu.Run(runOptions, ["input_ids", "attention_mask"], [ids, mask], ["logits"]);
            return new Dictionary<string, float[]> { ["logits"] = outputs[0].GetTensorDataAsSpan<float>().ToArray() };
        }
        var options = TestFiles.Cpu with { Device = ExecutionDevice.Cuda, AllowCpuFallback = false, Batch = 4, Sequence = 64, Warmup = 1, Runs = 3 };

        var report = RunOnCudaOrInconclusive(new ValidationRequest(merged, unmerged) { EagerReference = OnCpu }, options);

        Assert.AreEqual("CUDAExecutionProvider", report.Provider.Used, "the sessions must run on CUDA");
        Assert.IsNull(report.Provider.FallbackReason);
        Assert.AreEqual(1, calls, "the CPU reference ran once, on the validation inputs");
        var vsCpu = report.Comparisons.Single(c => c.Reference == ModelRole.Eager).Outputs.Single();
        Assert.AreEqual(0L, vsCpu.NonFiniteActual + vsCpu.NonFiniteReference, "finite on both providers");
        Assert.IsLessThanOrEqualTo(GpuCpuTolerance, vsCpu.MaxAbsError, $"max |GPU − CPU| = {vsCpu.MaxAbsError:G3} (cosine {vsCpu.CosineSimilarity:F9})");
        Assert.AreEqual(1.0, vsCpu.Top1Agreement);
        var vsUnmerged = report.Comparisons.Single(c => c.Reference == ModelRole.Unmerged).Outputs.Single();
        Assert.IsLessThanOrEqualTo(GpuCpuTolerance, vsUnmerged.MaxAbsError, "merged vs unmerged, both on the GPU");
        Assert.IsNotNull(report.Latency);
        StringAssert.Contains(report.Latency.Binding, "CUDA device 0");
        Assert.AreEqual(ValidationStatus.Pass, report.Status, string.Join("\n", report.Failures.Select(x => x.Message)));
    }

    /// <summary>Runs with CUDA required; Inconclusive, with ONNX Runtime's reason, where the CUDA provider cannot be used.</summary>
    internal static ValidationReport RunOnCudaOrInconclusive(ValidationRequest request, ValidationOptions options)
    {
        try
        {
            return Validator.Run(request, options);
        }
        catch (OnnxLoraException e) when (e.Kind == ErrorKind.BadInput && e.Message.Contains("could not be used and CPU fallback is disabled: ", StringComparison.Ordinal))
        {
            const string Marker = "CPU fallback is disabled: ";
            string reason = Internals.SessionFactory.ShortReason(e.Message[(e.Message.IndexOf(Marker, StringComparison.Ordinal) + Marker.Length)..]);
            Assert.Inconclusive($"GPU category: no usable CUDA provider here ({reason}); "
                + "run on a machine with an NVIDIA GPU, CUDA 13 and cuDNN 9: dotnet test --filter TestCategory=GPU");
            throw;
        }
    }
}
