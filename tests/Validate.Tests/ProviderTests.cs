using OnnxLora.Core;

namespace OnnxLora.Validate.Tests;

/// <summary>
/// CUDA selection and fallback. On a machine without CUDA 13/cuDNN 9 or a GPU the CUDA provider cannot load, so
/// these tests see the fallback path; where CUDA does load they are Inconclusive, and the GPU path is asserted by
/// <see cref="GpuTests"/> (category GPU: <c>dotnet test --filter TestCategory=GPU</c>).
/// </summary>
[TestClass]
public sealed class ProviderTests
{
    [TestMethod]
    public void Run_DeviceCudaWithFallback_RunsOnCpuAndRecordsOrtReason()
    {
        using var f = new TestFiles();
        var report = Validator.Run(new ValidationRequest(f.Merged(), f.Unmerged()),
            TestFiles.Cpu with { Device = ExecutionDevice.Cuda, AllowCpuFallback = true, DeviceId = 0 });

        if (report.Provider.Used == "CUDAExecutionProvider")
        {
            Assert.Inconclusive("CUDA loaded on this machine; the fallback path cannot be exercised here.");
        }
        Assert.AreEqual("CPUExecutionProvider", report.Provider.Used);
        Assert.AreEqual(ExecutionDevice.Cuda, report.Provider.Requested);
        string reason = report.Provider.FallbackReason!;
        Assert.IsNotNull(reason);
        // ORT's exception text, e.g. "[ErrorCode:Fail] OrtSessionOptionsAppendExecutionProvider_Cuda: Failed to load shared library".
        StringAssert.Contains(reason, "ErrorCode");
        StringAssert.Contains(reason.ToUpperInvariant(), "CUDA");
        Assert.IsTrue(report.Warnings.Any(w => w.Contains(reason, StringComparison.Ordinal)));
        Assert.AreEqual(ValidationStatus.Pass, report.Status);
    }

    [TestMethod]
    public void Run_DeviceAuto_FallsBackWithTheSameReasonAsCuda()
    {
        using var f = new TestFiles();
        var report = Validator.Run(new ValidationRequest(f.Merged(), f.Unmerged()), TestFiles.Cpu with { Device = ExecutionDevice.Auto });

        if (report.Provider.Used == "CUDAExecutionProvider")
        {
            Assert.Inconclusive("CUDA loaded on this machine.");
        }
        Assert.AreEqual(ExecutionDevice.Auto, report.Provider.Requested);
        string full = report.Provider.FallbackReason!;
        Assert.IsFalse(string.IsNullOrEmpty(full));
        string brief = report.Provider.ShortFallbackReason()!;
        Assert.IsLessThan(full.Length, brief.Length);
        Assert.DoesNotContain("\n", brief);
        if (full.Contains("cannot open shared object file", StringComparison.Ordinal))
        {
            StringAssert.EndsWith(brief, " not found");
            StringAssert.Contains(full, brief[..^" not found".Length] + ": cannot open shared object file");
        }
        string md = ReportWriter.ToMarkdown(report);
        StringAssert.Contains(md, "Fallback reason");
    }

    /// <summary>ONNX Runtime 1.31's reason on a machine without CUDA 13 libraries (captured here with --device auto).</summary>
    private const string CapturedReason =
        "[ErrorCode:Fail] OrtSessionOptionsAppendExecutionProvider_Cuda: Failed to load shared library | "
        + "/onnxruntime_src/onnxruntime/core/session/provider_bridge_ort.cc:2043 onnxruntime::Provider& onnxruntime::ProviderLibrary::Get() "
        + "[ONNXRuntimeError] : 1 : FAIL : Failed to load library /work/wt-validate-libs/tests/Validate.Tests/bin/Release/net10.0/runtimes/linux-x64/native/"
        + "libonnxruntime_providers_cuda.so with error: libcublasLt.so.13: cannot open shared object file: No such file or directory";

    [TestMethod]
    public void ShortReason_CapturedOrtMessage_IsTheMissingLibrary()
    {
        Assert.AreEqual("libcublasLt.so.13 not found", Internals.SessionFactory.ShortReason(CapturedReason));
    }

    [TestMethod]
    [DataRow("[ErrorCode:Fail] OrtSessionOptionsAppendExecutionProvider_Cuda: Failed to load shared library | logged line",
        "OrtSessionOptionsAppendExecutionProvider_Cuda: Failed to load shared library")]
    [DataRow("[ErrorCode:RuntimeException] /onnxruntime_src/onnxruntime/core/providers/cuda/cuda_call.cc:129 bool onnxruntime::CudaCall() "
        + "[ONNXRuntimeError] : 1 : FAIL : CUDA failure 100: no CUDA-capable device is detected ; GPU=0 ; hostname=h ; expr=cudaSetDevice(0);\nsecond line",
        "CUDA failure 100: no CUDA-capable device is detected")]
    [DataRow("Failed to load library a/libonnxruntime_providers_cuda.so with error: libcudnn.so.9: cannot open shared object file | "
        + "libcublasLt.so.13: cannot open shared object file", "libcudnn.so.9 not found")]
    [DataRow("  first line.\r\nsecond line", "first line")]
    [DataRow(" \n", "ONNX Runtime gave no reason")]
    public void ShortReason_IsOneLine(string reason, string expected)
    {
        Assert.AreEqual(expected, Internals.SessionFactory.ShortReason(reason));
    }

    [TestMethod]
    public void ShortFallbackReason_NullWhenCudaWasNotSkipped()
    {
        var settings = new SessionSettings(0, 0, GraphOptimization.All, "sequential");

        Assert.IsNull(new ProviderReport(ExecutionDevice.Cpu, 0, true, "CPUExecutionProvider", null, settings).ShortFallbackReason());
        Assert.AreEqual("libcublasLt.so.13 not found",
            new ProviderReport(ExecutionDevice.Auto, 0, true, "CPUExecutionProvider", CapturedReason, settings).ShortFallbackReason());
    }

    [TestMethod]
    public void Run_DeviceCudaWithoutFallback_FailsCleanlyWithOrtMessage()
    {
        using var f = new TestFiles();
        var request = new ValidationRequest(f.Merged(), f.Unmerged());
        var options = TestFiles.Cpu with { Device = ExecutionDevice.Cuda, AllowCpuFallback = false, DeviceId = 0 };

        ValidationReport? report = null;
        OnnxLoraException? error = null;
        try
        {
            report = Validator.Run(request, options);
        }
        catch (OnnxLoraException e)
        {
            error = e;
        }
        if (report is not null)
        {
            Assert.AreEqual("CUDAExecutionProvider", report.Provider.Used);
            Assert.Inconclusive("CUDA loaded on this machine.");
        }
        Assert.IsNotNull(error);
        Assert.AreEqual(ErrorKind.BadInput, error.Kind, "the user asked for CUDA without fallback: their device, not our bug");
        StringAssert.Contains(error.Message, "CUDA execution provider (device 0) could not be used and CPU fallback is disabled");
        StringAssert.Contains(error.Message, "ErrorCode");
        Assert.IsNotNull(error.InnerException);
    }

    [TestMethod]
    public void Run_DeviceCpu_NeverTriesCuda()
    {
        using var f = new TestFiles();
        var report = Validator.Run(new ValidationRequest(f.Merged(), f.Unmerged()), TestFiles.Cpu with { Device = ExecutionDevice.Cpu });

        Assert.AreEqual("CPUExecutionProvider", report.Provider.Used);
        Assert.IsNull(report.Provider.FallbackReason);
        Assert.IsFalse(report.Warnings.Any(w => w.Contains("requested but CPU ran", StringComparison.Ordinal)));
    }
}
