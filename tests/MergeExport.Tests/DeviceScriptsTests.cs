using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace OnnxLora.MergeExport.Tests;

/// <summary>
/// The local parts of scripts/device/ (the checks that run on the GPU machine, issue 15): the interop bundle
/// builds with this tool and fits a device transfer, the part splitting used for the CUDA bundle round-trips,
/// and interop.py's CPU parts (numpy float64 reference merge and LLaMA forward, against our merged
/// checkpoints and our ONNX logits from ONNX Runtime) pass on the bundle and fail on a corrupted one.
/// The bundle is built once per class (about 25 s on an idle 2-core machine).
/// </summary>
[TestClass]
public sealed class DeviceScriptsTests
{
    private const int DeviceTransferMib = 64;
    private const int BundleBudgetMib = 48;

    private static string _root = null!;
    private static string _bundle = null!;
    private static string _oursLogits = null!;
    private static ProcessResult _make = null!;

    public TestContext TestContext { get; set; } = null!;

    private static string Scripts => Path.Combine(SampleModels.Root, "scripts", "device");

    [ClassInitialize]
    public static void BuildBundle(TestContext context)
    {
        _root = Path.Combine(Path.GetTempPath(), "onnxlora-device-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_root);
        _bundle = Path.Combine(_root, "bundle");
        string tool = Path.Combine(AppContext.BaseDirectory, "merge-export.dll");
        _make = Run("bash", [Path.Combine(Scripts, "make-bundle.sh"), "--out", _bundle], TimeSpan.FromMinutes(5),
            ("MERGE_EXPORT", $"dotnet {tool}"));
        context.WriteLine($"make-bundle.sh: exit {_make.ExitCode} in {_make.Elapsed.TotalSeconds:F1} s\n{_make.Out}{_make.Err}");
        if (_make.ExitCode == 0)
        {
            _oursLogits = Path.Combine(_root, "ours-logits.json");
            WriteOursLogits(_bundle, _oursLogits);
        }
    }

    [ClassCleanup]
    public static void Cleanup()
    {
        try
        {
            Directory.Delete(_root, recursive: true);
        }
        catch (IOException)
        {
            // Best effort.
        }
    }

    [TestMethod]
    [TestCategory("Device")]
    public void MakeBundle_WritesEveryAdapterKindWithMergedCheckpointsAndExports_UnderOneTransfer()
    {
        Assert.AreEqual(0, _make.ExitCode, _make.Err);
        using var manifest = JsonDocument.Parse(File.ReadAllText(Path.Combine(_bundle, "manifest.json")));
        var adapters = manifest.RootElement.GetProperty("adapters");
        CollectionAssert.AreEquivalent(new[] { "cat", "dora", "lora", "regex", "rslora" },
            adapters.EnumerateObject().Select(p => p.Name).ToArray());
        Assert.IsTrue(adapters.GetProperty("rslora").GetProperty("use_rslora").GetBoolean());
        Assert.IsTrue(adapters.GetProperty("dora").GetProperty("use_dora").GetBoolean());
        Assert.IsGreaterThan(0, adapters.GetProperty("cat").GetProperty("rank_pattern_keys").GetInt32(), "cat writes rank_pattern");
        Assert.AreEqual(JsonValueKind.String, adapters.GetProperty("regex").GetProperty("target_modules").ValueKind);
        foreach (var adapter in adapters.EnumerateObject())
        {
            Assert.AreEqual($"merged/{adapter.Name}", adapter.Value.GetProperty("merged_checkpoint").GetString());
        }
        foreach (string name in new[] { "lora", "rslora", "dora" })
        {
            Assert.AreEqual($"onnx/{name}-unmerged.onnx", adapters.GetProperty(name).GetProperty("unmerged_onnx").GetString());
        }

        long total = 0;
        foreach (var file in manifest.RootElement.GetProperty("files").EnumerateObject())
        {
            var info = new FileInfo(Path.Combine(_bundle, file.Name));
            Assert.IsTrue(info.Exists, file.Name);
            Assert.AreEqual(file.Value.GetProperty("bytes").GetInt64(), info.Length, file.Name);
            total += info.Length;
        }
        long onDisk = Directory.GetFiles(_bundle, "*", SearchOption.AllDirectories).Sum(f => new FileInfo(f).Length);
        TestContext.WriteLine($"bundle: {onDisk / 1048576.0:F1} MiB in {Directory.GetFiles(_bundle, "*", SearchOption.AllDirectories).Length} files");
        Assert.IsLessThan(BundleBudgetMib * 1048576L, onDisk);
        Assert.IsLessThan(DeviceTransferMib * 1048576L, onDisk);
        Assert.IsGreaterThan(onDisk - 64 * 1024, total, "every file but manifest.json is listed in it");
    }

    [TestMethod]
    [TestCategory("Device")]
    public void RequireUnderMib_OverTheLimit_FailsNamingTheSize()
    {
        Assert.AreEqual(0, _make.ExitCode, _make.Err);
        var over = RunLib($"require_under_mib '{_bundle}' 1 make-bundle");
        Assert.AreEqual(1, over.ExitCode, over.Out + over.Err);
        StringAssert.Contains(over.Err, "over the 1 MiB limit");
        var under = RunLib($"require_under_mib '{_bundle}' {BundleBudgetMib} make-bundle");
        Assert.AreEqual(0, under.ExitCode, under.Err);
    }

    [TestMethod]
    [TestCategory("Device")]
    public void SplitParts_JoinParts_RoundTripAndRejectACorruptedPart()
    {
        string dir = Path.Combine(_root, "parts-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        string file = Path.Combine(dir, "archive.bin");
        var bytes = new byte[(5 * 1048576) + 12345];
        new Random(7).NextBytes(bytes);
        File.WriteAllBytes(file, bytes);
        string parts = Path.Combine(dir, "parts");

        var split = RunLib($"split_parts '{file}' '{parts}' 2");
        Assert.AreEqual(0, split.ExitCode, split.Err);
        Assert.AreEqual("3", split.Out.Trim(), "5 MiB in parts of 2 MiB");
        Assert.IsTrue(Directory.GetFiles(parts, "part-*").All(p => new FileInfo(p).Length <= 2 * 1048576));

        var join = RunLib($"join_parts '{parts}' '{dir}/joined.bin'");
        Assert.AreEqual(0, join.ExitCode, join.Err);
        CollectionAssert.AreEqual(bytes, File.ReadAllBytes(Path.Combine(dir, "joined.bin")));

        File.Move(Path.Combine(parts, "part-02"), Path.Combine(dir, "part-02.aside"));
        var missing = RunLib($"join_parts '{parts}' '{dir}/joined2.bin'");
        Assert.AreEqual(1, missing.ExitCode);
        StringAssert.Contains(missing.Err, "missing in");
        StringAssert.Contains(missing.Err, "part-02");

        File.Move(Path.Combine(dir, "part-02.aside"), Path.Combine(parts, "part-02"));
        using (var stream = File.OpenWrite(Path.Combine(parts, "part-01")))
        {
            stream.WriteByte(0x42);
        }
        var corrupted = RunLib($"join_parts '{parts}' '{dir}/joined3.bin'");
        Assert.AreEqual(1, corrupted.ExitCode);
        StringAssert.Contains(corrupted.Err, "part-01 has sha256");
    }

    [TestMethod]
    [TestCategory("Device")]
    public void Interop_CpuParts_PassOnTheBundle_AndSayWhatIsSkipped()
    {
        Assert.AreEqual(0, _make.ExitCode, _make.Err);
        string python = PythonWithNumpy();
        string out1 = Path.Combine(_root, "interop-ok");
        var run = Run(python, [Path.Combine(Scripts, "interop.py"), "--bundle", _bundle, "--out", out1, "--ours-logits", _oursLogits],
            TimeSpan.FromMinutes(3));
        TestContext.WriteLine($"interop.py: exit {run.ExitCode} in {run.Elapsed.TotalSeconds:F1} s\n{run.Out}{run.Err}");
        Assert.AreEqual(0, run.ExitCode, run.Out + run.Err);

        var rows = Rows(out1);
        Assert.IsFalse(rows.Any(r => r.Status is "fail" or "error"), string.Join("\n", rows));
        Assert.AreEqual(1, Passed(rows, "bundle"));
        Assert.AreEqual(5, Passed(rows, "reference-merge"), "one per adapter");
        Assert.AreEqual(5, Passed(rows, "reference-logits"), "merged checkpoint vs unmerged branches, per adapter");
        Assert.AreEqual(6, Passed(rows, "ours-vs-reference"), "base + 3 unmerged + 2 merged ONNX exports");
        // Whatever this machine lacks (transformers, PEFT) is a skip that names the module, never silence.
        foreach (string check in new[] { "transformers-logits", "peft-load", "peft-fixtures" })
        {
            var these = rows.Where(r => r.Check == check).ToList();
            Assert.IsNotEmpty(these, $"{check} is reported");
            Assert.IsTrue(these.All(r => r.Status == "pass" || (r.Status == "skip" && r.Note.Contains("needs", StringComparison.Ordinal))),
                string.Join("\n", these));
        }
        Assert.IsTrue(File.Exists(Path.Combine(out1, "interop.md")));
    }

    [TestMethod]
    [TestCategory("Device")]
    public void Interop_CorruptedMergedTensor_FailsThatAdapterAndTheChecksum()
    {
        Assert.AreEqual(0, _make.ExitCode, _make.Err);
        string python = PythonWithNumpy();
        string copy = Path.Combine(_root, "bundle-corrupted");
        CopyTree(_bundle, copy);
        // One element of a merged weight of the lora adapter, moved by 0.25.
        string merged = Path.Combine(copy, "merged", "lora", "model.safetensors");
        long offset = TensorOffset(merged, "model.layers.2.self_attn.q_proj.weight");
        using (var stream = new FileStream(merged, FileMode.Open, FileAccess.ReadWrite))
        {
            var four = new byte[4];
            stream.Position = offset;
            stream.ReadExactly(four);
            float value = BitConverter.ToSingle(four) + 0.25f;
            stream.Position = offset;
            stream.Write(BitConverter.GetBytes(value));
        }

        string out2 = Path.Combine(_root, "interop-corrupted");
        var run = Run(python, [Path.Combine(Scripts, "interop.py"), "--bundle", copy, "--out", out2, "--ours-logits", _oursLogits],
            TimeSpan.FromMinutes(3));
        Assert.AreEqual(1, run.ExitCode, run.Out + run.Err);
        var rows = Rows(out2);
        Assert.AreEqual("fail", rows.Single(r => r.Check == "bundle").Status);
        Assert.AreEqual("fail", rows.Single(r => r.Check == "reference-merge" && r.Case == "lora").Status);
        Assert.AreEqual("pass", rows.Single(r => r.Check == "reference-merge" && r.Case == "dora").Status);
    }

    /// <summary>
    /// cuda-validate.sh's plumbing without a GPU: parts arrive over two transfers, are staged, joined, verified and
    /// unpacked; a stand-in merge-export (a shell script writing a report like the real one) shows the arguments
    /// it got and the reports land in $OUT within the 8-file limit.
    /// </summary>
    [TestMethod]
    [TestCategory("Device")]
    public void CudaValidate_PartsOverTwoTransfers_StagedJoinedUnpackedAndReportsCollected()
    {
        string dir = Path.Combine(_root, "cuda-" + Guid.NewGuid().ToString("N"));
        string app = Path.Combine(dir, "app");
        Directory.CreateDirectory(Path.Combine(app, "merge-export"));
        Directory.CreateDirectory(Path.Combine(app, "sample"));
        string fake = Path.Combine(app, "merge-export", "merge-export");
        File.WriteAllText(fake, """
            #!/usr/bin/env bash
            if [[ "$1" == --version ]]; then echo 0.0-stand-in; exit 0; fi
            report=""; prev=""
            for a in "$@"; do [[ "$prev" == --report ]] && report="$a"; prev="$a"; done
            mkdir -p "$report"
            echo "$@" > "$report/../args.txt"
            cat > "$report/validation.json" <<'JSON'
            {"status": "pass", "onnxRuntimeVersion": "stand-in", "provider": {"used": "CUDAExecutionProvider", "fallbackReason": null},
             "gates": [{"gate": "finite", "passed": true}], "comparisons": [], "warnings": [],
             "latency": {"binding": "stand-in", "models": [{"role": "merged", "p50Ms": 1.5}],
                         "ratios": [{"name": "merged/base", "median": 1.004, "p10": 0.99, "p90": 1.02, "pairs": 200}]}}
            JSON
            echo "<html></html>" > "$report/validation.html"
            """.Replace("\r\n", "\n", StringComparison.Ordinal));
        Assert.AreEqual(0, Run("chmod", ["+x", fake], TimeSpan.FromMinutes(1)).ExitCode);
        File.WriteAllBytes(Path.Combine(app, "merge-export", "libonnxruntime_providers_cuda.so"), []);
        var noise = new byte[1536 * 1024];
        new Random(3).NextBytes(noise);   // incompressible: the archive needs two 1 MiB parts
        File.WriteAllBytes(Path.Combine(app, "sample", "base.onnx"), noise);
        string archive = Path.Combine(dir, "cuda-app.tar.xz");
        // Python's tarfile writes .tar.xz without an xz binary (as make-cuda-bundle.sh's tar | xz does).
        var pack = Run(PythonWithNumpy(), ["-c", "import sys, tarfile\nwith tarfile.open(sys.argv[1], 'w:xz') as t: t.add(sys.argv[2], arcname='.')", archive, app],
            TimeSpan.FromMinutes(1));
        Assert.AreEqual(0, pack.ExitCode, pack.Err);
        string built = Path.Combine(dir, "built");
        var split = RunLib($"split_parts '{archive}' '{built}' 1");
        Assert.AreEqual("2", split.Out.Trim(), split.Err);

        string carried = Path.Combine(dir, "carried");
        string stage = Path.Combine(dir, "stage");
        string output = Path.Combine(dir, "out");
        var env = new[] { ("ONNXLORA_CARRIED", carried), ("ONNXLORA_STAGE", stage), ("OUT", output) };
        string script = Path.Combine(Scripts, "cuda-validate.sh");

        // Transfer 1: the first part.
        Directory.CreateDirectory(carried);
        File.Copy(Path.Combine(built, "SHA256SUMS"), Path.Combine(carried, "SHA256SUMS"));
        File.Copy(Path.Combine(built, "part-00"), Path.Combine(carried, "part-00"));
        var first = Run("bash", [script, "stage"], TimeSpan.FromMinutes(1), env);
        Assert.AreEqual(0, first.ExitCode, first.Out + first.Err);
        StringAssert.Contains(first.Out, "1 of 2 parts staged");
        StringAssert.Contains(first.Out, "still missing: part-01");

        // Transfer 2: only the second part travels; the first stays staged from before.
        File.Delete(Path.Combine(carried, "part-00"));
        File.Copy(Path.Combine(built, "part-01"), Path.Combine(carried, "part-01"));
        var second = Run("bash", [script, "sample"], TimeSpan.FromMinutes(2), env);
        Assert.AreEqual(0, second.ExitCode, second.Out + second.Err);
        StringAssert.Contains(second.Out, "2 of 2 parts staged");
        CollectionAssert.AreEqual(noise, File.ReadAllBytes(Path.Combine(stage, "app", "sample", "base.onnx")));

        string args = File.ReadAllText(Path.Combine(stage, "reports", "args.txt"));
        StringAssert.Contains(args, "--device cuda --no-cpu-fallback");
        StringAssert.Contains(args, Path.Combine(stage, "app", "sample", "lora-merged.onnx"));
        string[] files = Directory.GetFiles(output).Select(f => Path.GetFileName(f)).Order(StringComparer.Ordinal).ToArray();
        CollectionAssert.AreEqual(new[] { "cuda-validate.log", "env.txt", "sample-validation.html", "sample-validation.json", "summary.json" }, files);
        using var summary = JsonDocument.Parse(File.ReadAllLines(Path.Combine(output, "summary.json")).Single());
        Assert.AreEqual("CUDAExecutionProvider", summary.RootElement.GetProperty("provider").GetString());
        Assert.AreEqual(1.004, summary.RootElement.GetProperty("ratios").GetProperty("merged/base").GetProperty("median").GetDouble());
    }

    private sealed record Row(string Check, string Case, string Status, string Note)
    {
        public override string ToString() => $"{Status} {Check} {Case}: {Note}";
    }

    private static List<Row> Rows(string outDir)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "interop.json")));
        return doc.RootElement.GetProperty("checks").EnumerateArray().Select(r => new Row(
            r.GetProperty("check").GetString()!, r.GetProperty("case").GetString()!, r.GetProperty("status").GetString()!,
            r.TryGetProperty("note", out var n) ? n.GetString() ?? "" : "")).ToList();
    }

    private static int Passed(List<Row> rows, string check) => rows.Count(r => r.Check == check && r.Status == "pass");

    /// <summary>Our logits: every ONNX file of the bundle run in ONNX Runtime (CPU) on the bundle's inputs.json.</summary>
    private static void WriteOursLogits(string bundle, string path)
    {
        using var inputs = JsonDocument.Parse(File.ReadAllText(Path.Combine(bundle, "inputs.json")));
        long[][] ids = inputs.RootElement.GetProperty("input_ids").EnumerateArray().Select(r => r.EnumerateArray().Select(v => v.GetInt64()).ToArray()).ToArray();
        long[][] mask = inputs.RootElement.GetProperty("attention_mask").EnumerateArray().Select(r => r.EnumerateArray().Select(v => v.GetInt64()).ToArray()).ToArray();
        int batch = ids.Length, seq = ids[0].Length;
        var idTensor = new DenseTensor<long>(ids.SelectMany(r => r).ToArray(), [batch, seq]);
        var maskTensor = new DenseTensor<long>(mask.SelectMany(r => r).ToArray(), [batch, seq]);

        using var stream = File.Create(path);
        using var json = new Utf8JsonWriter(stream);
        json.WriteStartObject();
        json.WriteString("source", "ONNX Runtime (.NET, CPU)");
        json.WriteStartObject("logits");
        foreach (string file in Directory.GetFiles(Path.Combine(bundle, "onnx"), "*.onnx").Order(StringComparer.Ordinal))
        {
            using var session = new InferenceSession(file);
            using var results = session.Run(
            [
                NamedOnnxValue.CreateFromTensor("input_ids", idTensor),
                NamedOnnxValue.CreateFromTensor("attention_mask", maskTensor),
            ]);
            var logits = results.Single(r => r.Name == "logits").AsTensor<float>();
            json.WriteStartObject("onnx/" + Path.GetFileName(file));
            json.WriteStartArray("shape");
            foreach (int d in logits.Dimensions)
            {
                json.WriteNumberValue(d);
            }
            json.WriteEndArray();
            json.WriteStartArray("data");
            foreach (float v in logits)
            {
                json.WriteNumberValue(v);
            }
            json.WriteEndArray();
            json.WriteEndObject();
        }
        json.WriteEndObject();
        json.WriteEndObject();
    }

    /// <summary>Where a tensor's data starts in a safetensors file.</summary>
    private static long TensorOffset(string path, string name)
    {
        using var stream = File.OpenRead(path);
        var eight = new byte[8];
        stream.ReadExactly(eight);
        long headerLength = BitConverter.ToInt64(eight);
        var header = new byte[headerLength];
        stream.ReadExactly(header);
        using var doc = JsonDocument.Parse(header);
        return 8 + headerLength + doc.RootElement.GetProperty(name).GetProperty("data_offsets")[0].GetInt64();
    }

    private static void CopyTree(string from, string to)
    {
        foreach (string file in Directory.GetFiles(from, "*", SearchOption.AllDirectories))
        {
            string target = Path.Combine(to, Path.GetRelativePath(from, file));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file, target);
        }
    }

    /// <summary>
    /// A Python 3 that imports numpy (interop.py's CPU parts need it): $ONNXLORA_PYTHON, python3 on PATH, or
    /// Debian's /usr/bin/python3 (python3-numpy comes with python3-onnx, which scripts/setup.sh installs).
    /// </summary>
    private static string PythonWithNumpy()
    {
        var candidates = new[] { Environment.GetEnvironmentVariable("ONNXLORA_PYTHON"), "python3", "/usr/bin/python3" };
        var tried = new List<string>();
        foreach (string? python in candidates)
        {
            if (string.IsNullOrEmpty(python))
            {
                continue;
            }
            try
            {
                if (Run(python, ["-c", "import numpy"], TimeSpan.FromMinutes(1)).ExitCode == 0)
                {
                    return python;
                }
                tried.Add($"{python}: no numpy");
            }
            catch (System.ComponentModel.Win32Exception e)
            {
                tried.Add($"{python}: {e.Message}");
            }
        }
        Assert.Inconclusive($"no Python 3 with numpy for interop.py's CPU parts ({string.Join("; ", tried)}); run scripts/setup.sh");
        return null!;
    }

    private static ProcessResult RunLib(string script) =>
        Run("bash", ["-c", $"source '{Path.Combine(Scripts, "lib.sh")}' && {script}"], TimeSpan.FromMinutes(1));

    private sealed record ProcessResult(int ExitCode, string Out, string Err, TimeSpan Elapsed);

    private static ProcessResult Run(string file, IEnumerable<string> args, TimeSpan timeout, params (string Name, string Value)[] env)
    {
        var info = new ProcessStartInfo(file)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = SampleModels.Root,
        };
        foreach (string a in args)
        {
            info.ArgumentList.Add(a);
        }
        foreach (var (name, value) in env)
        {
            info.Environment[name] = value;
        }
        var clock = Stopwatch.StartNew();
        using var process = Process.Start(info)!;
        var stdout = new StringBuilder();
        var stderr = new StringBuilder();
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) { lock (stdout) { stdout.AppendLine(e.Data); } } };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) { lock (stderr) { stderr.AppendLine(e.Data); } } };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        if (!process.WaitForExit(timeout))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"{file} {string.Join(' ', args)} ran over {timeout}");
        }
        process.WaitForExit();
        return new ProcessResult(process.ExitCode, stdout.ToString(), stderr.ToString(), clock.Elapsed);
    }
}
