using OnnxLora.Core;

namespace OnnxLora.Validate.Tests;

/// <summary>
/// CUDA selection and fallback. On a machine without CUDA 13/cuDNN 9 or a GPU the CUDA provider cannot load, so
/// these tests see the fallback path; where CUDA does load they are Inconclusive (the GPU path is checked there
/// by running with --device cuda by hand).
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
        Assert.IsFalse(string.IsNullOrEmpty(report.Provider.FallbackReason));
        string md = ReportWriter.ToMarkdown(report);
        StringAssert.Contains(md, "Fallback reason");
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
