namespace OnnxLora.Reliability.Tests;

/// <summary>
/// Hostile files fed to the real merge-export process: each must end with exit 2, a one-line message
/// naming the file, no output, and a small peak memory (the declared sizes are many GB, so a tool that
/// trusted them would allocate far more than the bound; the managed heap is also capped).
/// </summary>
[TestClass]
public sealed class HostileCliTests
{
    /// <summary>Peak resident memory allowed for a rejecting child (rejections measured near 36 MB; a normal export of the sample model peaks near 180 MB).</summary>
    private const long PeakKiBLimit = 200 * 1024;

    private static readonly Dictionary<string, string> CappedHeap = new() { ["DOTNET_GCHeapHardLimit"] = "0x20000000" };

    [TestMethod]
    public void Merge_CheckpointTensorWhoseShapeProductOverflows_IsRejected()
    {
        using var dir = new TempDir();
        string model = HostileFiles.Checkpoint(dir.File("model"), HostileFiles.Safetensors(
            """{"model.layers.0.self_attn.q_proj.weight":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,16]}}""",
            new byte[16]));

        AssertRejected(dir, "merge", ["merge", "--model", model, "--adapter", Tool.TinyLlamaLora, "--out", dir.File("out/merged")],
            Path.Combine(model, "model.safetensors"), "shape");
    }

    [TestMethod]
    public void Merge_CheckpointTensorDeclaring16GBeyondTheFile_IsRejected()
    {
        using var dir = new TempDir();
        string model = HostileFiles.Checkpoint(dir.File("model"), HostileFiles.Safetensors(
            """{"model.layers.0.self_attn.q_proj.weight":{"dtype":"F32","shape":[65536,65536],"data_offsets":[0,17179869184]}}""",
            new byte[64]));

        AssertRejected(dir, "merge", ["merge", "--model", model, "--adapter", Tool.TinyLlamaLora, "--out", dir.File("out/merged")],
            Path.Combine(model, "model.safetensors"), null);
    }

    [TestMethod]
    public void Merge_AdapterRankLargerThanTheMatrix_IsRejected()
    {
        // q_proj is 128×128; rank 256 cannot be a low-rank update of it.
        const int r = 256;
        using var dir = new TempDir();
        string header = $$$"""
            {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight":{"dtype":"F32","shape":[{{{r}}},128],"data_offsets":[0,{{{r * 128 * 4}}}]},
             "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight":{"dtype":"F32","shape":[128,{{{r}}}],"data_offsets":[{{{r * 128 * 4}}},{{{2 * r * 128 * 4}}}]}}
            """;
        string adapter = HostileFiles.Adapter(dir.File("adapter"), HostileFiles.LoraConfig(r), HostileFiles.Safetensors(header, new byte[2 * r * 128 * 4]));

        AssertRejected(dir, "merge", ["merge", "--model", Tool.TinyLlama, "--adapter", adapter, "--out", dir.File("out/merged")],
            adapter, "256");
    }

    [TestMethod]
    public void Merge_AdapterWithNaNAlpha_IsRejected()
    {
        using var dir = new TempDir();
        string adapter = dir.File("adapter");
        Directory.CreateDirectory(adapter);
        File.Copy(Path.Combine(Tool.TinyLlamaLora, "adapter_model.safetensors"), Path.Combine(adapter, "adapter_model.safetensors"));
        string config = File.ReadAllText(Path.Combine(Tool.TinyLlamaLora, "adapter_config.json"));
        Assert.Contains("\"lora_alpha\": 16", config);
        File.WriteAllText(Path.Combine(adapter, "adapter_config.json"), config.Replace("\"lora_alpha\": 16", "\"lora_alpha\": NaN", StringComparison.Ordinal));

        AssertRejected(dir, "merge", ["merge", "--model", Tool.TinyLlama, "--adapter", adapter, "--out", dir.File("out/merged")],
            Path.Combine(adapter, "adapter_config.json"), "lora_alpha");
    }

    [TestMethod]
    public void Inspect_SafetensorsWithForgedExabyteHeaderLength_IsRejected()
    {
        using var dir = new TempDir();
        string file = dir.File("forged.safetensors");
        File.WriteAllBytes(file, HostileFiles.Safetensors("{}", [], declaredHeaderLength: 1UL << 60));

        AssertRejected(dir, "inspect", ["inspect", file], file, null);
    }

    [TestMethod]
    [DataRow("/etc/passwd")]
    [DataRow("../../../../../../../../etc/passwd")]
    public void Inspect_OnnxWithExternalDataOutsideItsFolder_IsRejected(string location)
    {
        using var dir = new TempDir();
        string file = dir.File("hostile.onnx");
        File.WriteAllBytes(file, HostileFiles.OnnxWithExternalData(location));

        AssertRejected(dir, "inspect", ["inspect", file], file, "'w'");
    }

    [TestMethod]
    public void Validate_OnnxWithExternalDataAtEtcPasswd_IsRejectedWithoutReport()
    {
        using var dir = new TempDir();
        string file = dir.File("hostile.onnx");
        File.WriteAllBytes(file, HostileFiles.OnnxWithExternalData("/etc/passwd"));

        AssertRejected(dir, "validate", ["validate", "--merged", file, "--unmerged", file, "--runs", "0", "--warmup", "0", "--report", dir.File("out/report")],
            file, "external_data location: found '/etc/passwd' (an absolute path)");
    }

    [TestMethod]
    public void Validate_TruncatedOnnx_IsRejectedWithoutReport()
    {
        using var dir = new TempDir();
        string file = dir.File("truncated.onnx");
        byte[] whole = HostileFiles.OnnxWithExternalData("w.bin");
        File.WriteAllBytes(file, whole.AsSpan(0, whole.Length / 2).ToArray());

        AssertRejected(dir, "validate", ["validate", "--merged", file, "--unmerged", file, "--runs", "0", "--warmup", "0", "--report", dir.File("out/report")],
            file, null);
    }

    /// <summary>Exit 2, one line "merge-export CMD: error: …" naming <paramref name="names"/>, nothing under dir/out, small peak memory.</summary>
    private static void AssertRejected(TempDir dir, string command, string[] args, string names, string? fragment)
    {
        var run = Tool.Run(args, TimeSpan.FromMinutes(2), CappedHeap, measurePeakMemory: true);

        Console.WriteLine($"{run.Err.Trim()} [peak {run.PeakRssKiB?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "not measured"} KiB]");
        Assert.AreEqual(2, run.ExitCode, run.ToString());
        string[] lines = run.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.HasCount(1, lines, run.Err);
        StringAssert.StartsWith(lines[0], $"merge-export {command}: error: ");
        StringAssert.Contains(lines[0], names);
        if (fragment is not null)
        {
            StringAssert.Contains(lines[0], fragment);
        }
        string outFolder = dir.File("out");
        Assert.IsTrue(!Directory.Exists(outFolder) || Directory.GetFileSystemEntries(outFolder).Length == 0,
            $"left behind: {string.Join(", ", Directory.Exists(outFolder) ? Directory.GetFileSystemEntries(outFolder) : [])}");
        if (run.PeakRssKiB is { } peak)
        {
            Assert.IsLessThan(PeakKiBLimit, peak, $"peak resident memory {peak} KiB");
        }
        else
        {
            Assert.Inconclusive("rejected as expected, but the peak-memory bound was not checked: "
                + (Tool.CanMeasurePeakMemory ? "GNU time wrote no peak" : "/usr/bin/time is missing (bash scripts/setup.sh installs it: apt-get install time)"));
        }
    }
}
