using OnnxLora.Validate.Internals;

namespace OnnxLora.Validate.Tests;

[TestClass]
public sealed class MachineInfoTests
{
    [TestMethod]
    public void CpuModel_IsTheFirstModelName_ElseTheArmHardwareLine()
    {
        Assert.AreEqual("AMD EPYC 7763 64-Core Processor",
            MachineInfo.CpuModel(["processor\t: 0", "vendor_id\t: AuthenticAMD", "model name\t: AMD EPYC 7763 64-Core Processor", "model name\t: other"]));
        Assert.AreEqual("CPU part 0xd0c", MachineInfo.CpuModel(["processor\t: 0", "CPU part\t: 0xd0c", "model name\t:"]));
        Assert.IsNull(MachineInfo.CpuModel(["processor\t: 0"]));
    }

    [TestMethod]
    public void Current_DescribesThisMachine()
    {
        var m = MachineInfo.Current(null);

        Assert.AreEqual(Environment.ProcessorCount, m.LogicalCores);
        Assert.IsNull(m.Gpu);
        Assert.IsFalse(string.IsNullOrWhiteSpace(m.CpuModel));
        if (File.Exists("/proc/meminfo"))
        {
            Assert.IsGreaterThan(1L << 28, m.MemoryBytes!.Value);
            Assert.AreNotEqual("unknown", m.CpuModel);
        }
    }

    [TestMethod]
    [DataRow("NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 22:23:56 UTC 2024", "550.54.15")]
    [DataRow("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.86.15  Release Build  (dvs-builder@U16)", "570.86.15")]
    [DataRow("something else", null)]
    public void Gpu_DriverVersionFromTheKernelModule(string line, string? expected)
    {
        using var f = new TestFiles();
        File.WriteAllText(f.File("version"), line + "\nGCC version:  gcc version 12.3.0\n");

        Assert.AreEqual(expected, MachineInfo.Gpu(f.Dir, 0, null).Driver);
    }

    [TestMethod]
    public void Gpu_NameByPciOrderAndCudaVisibleDevices()
    {
        using var f = new TestFiles();
        Gpu(f, "0000:b1:00.0", "NVIDIA L4");
        Gpu(f, "0000:18:00.0", "NVIDIA H200");

        Assert.AreEqual("NVIDIA H200", MachineInfo.Gpu(f.Dir, 0, null).Name, "PCI order: 18 before b1");
        Assert.AreEqual("NVIDIA L4", MachineInfo.Gpu(f.Dir, 1, null).Name);
        Assert.AreEqual("NVIDIA L4", MachineInfo.Gpu(f.Dir, 0, "1").Name, "ordinal 0 of CUDA_VISIBLE_DEVICES=1 is the second GPU");
        Assert.IsNull(MachineInfo.Gpu(f.Dir, 0, "GPU-1234").Name, "UUIDs cannot be mapped");
        Assert.IsNull(MachineInfo.Gpu(f.Dir, 5, null).Name);
        Assert.AreEqual(5, MachineInfo.Gpu(f.Dir, 5, null).DeviceId);
    }

    [TestMethod]
    public void Gpu_AllTheSameModel_NeedsNoMapping()
    {
        using var f = new TestFiles();
        Gpu(f, "0000:18:00.0", "NVIDIA H200");
        Gpu(f, "0000:2a:00.0", "NVIDIA H200");

        Assert.AreEqual("NVIDIA H200", MachineInfo.Gpu(f.Dir, 1, "GPU-1234").Name);
        Assert.AreEqual(new GpuReport(3, null, null), MachineInfo.Gpu(f.File("missing"), 3, null));
    }

    private static void Gpu(TestFiles f, string bus, string model)
    {
        string dir = Path.Combine(f.Dir, "gpus", bus);
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "information"), $"Model: \t\t {model}\nIRQ:   \t\t 42\nGPU UUID: \t GPU-x\n");
    }
}
