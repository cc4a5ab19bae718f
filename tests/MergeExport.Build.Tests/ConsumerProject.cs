using System.Diagnostics;
using System.Text;

namespace OnnxLora.MergeExport.Build.Tests;

/// <summary>The outcome of one <c>dotnet build</c> of a consumer project.</summary>
internal sealed record BuildOutcome(int ExitCode, string Log)
{
    public bool Succeeded => ExitCode == 0;

    /// <summary>The log for assertion messages: without the compiler's (very long) command line.</summary>
    public string Shown => string.Join('\n', Log.Split('\n').Where(line => !line.Contains("/reference:", StringComparison.Ordinal)));

    public int Count(string text)
    {
        int count = 0;
        for (int i = Log.IndexOf(text, StringComparison.Ordinal); i >= 0; i = Log.IndexOf(text, i + text.Length, StringComparison.Ordinal))
        {
            count++;
        }
        return count;
    }
}

/// <summary>
/// A throwaway SDK project in a temp folder that imports the repository's LoraMergeExport props and
/// targets by path, with a tiny base/ model folder and an adapters/x/ adapter, built with the real
/// <c>dotnet build</c> against the fake merge-export tool (FakeTool/; each of its calls is recorded in
/// <see cref="InvocationLog"/>) or the real one (<see cref="RealToolDll"/>, with
/// <see cref="UseSampleAdapter"/> and <see cref="SampleModel"/>).
/// </summary>
internal sealed class ConsumerProject : IDisposable
{
    private static readonly string RepoRoot = FindRepoRoot();
    private static readonly string TestBin = AppContext.BaseDirectory;

    private readonly string _buildFolder;
    private readonly bool _packageLayout;

    private ConsumerProject(string root, string buildFolder, bool packageLayout)
    {
        Root = root;
        _buildFolder = buildFolder;
        _packageLayout = packageLayout;
    }

    public const string DefaultItem = "Model=\"base/\" OutputFile=\"out/x.onnx\" MaxLatencyRatio=\"1.05\" Atol=\"1e-4\"";

    public string Root { get; }

    public string ProjectFile => Path.Combine(Root, "Consumer.csproj");

    public string InvocationLog => Path.Combine(Root, "invocations.log");

    public string OutputFile => Path.Combine(Root, "out", "x.onnx");

    public string ReportFolder => Path.Combine(Root, "out", "x.onnx.report");

    public string AdapterFolder => Path.Combine(Root, "adapters", "x");

    public static string FakeToolDll => Path.Combine(TestBin, "fake-merge-export.dll");

    /// <summary>The real merge-export, built and copied beside the tests by the test project's ProjectReference.</summary>
    public static string RealToolDll => Path.Combine(TestBin, "merge-export.dll");

    /// <summary>The committed sample checkpoint (models/tiny-llama) that models/tiny-llama-lora was trained on.</summary>
    public static string SampleModel => Path.Combine(RepoRoot, "models", "tiny-llama");

    /// <summary>The tool's recorded calls, one line of tab-separated arguments each.</summary>
    public string[] Invocations => File.Exists(InvocationLog) ? File.ReadAllLines(InvocationLog) : [];

    /// <summary>
    /// Creates the project with one LoraMergeExport item carrying <paramref name="itemAttributes"/>. With
    /// <paramref name="packageLayout"/>, the props/targets and the task assembly are first laid out as in the
    /// NuGet package (build/, tasks/net10.0/) and imported from there, without OnnxLoraMergeExportTaskAssembly.
    /// </summary>
    public static ConsumerProject Create(string itemAttributes = DefaultItem, bool packageLayout = false, string folderPrefix = "")
    {
        string root = Path.Combine(Path.GetTempPath(), "olmx-build-tests", folderPrefix + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path.Combine(root, "base"));
        Directory.CreateDirectory(Path.Combine(root, "adapters", "x"));
        File.WriteAllText(Path.Combine(root, "base", "config.json"), "{\"model_type\":\"llama\"}\n");
        File.WriteAllText(Path.Combine(root, "base", "model.safetensors"), "base-weights");
        File.WriteAllText(Path.Combine(root, "adapters", "x", "adapter_config.json"), "{\"r\":8}");
        File.WriteAllText(Path.Combine(root, "adapters", "x", "adapter_model.safetensors"), "adapter-v1");
        string buildFolder = Path.Combine(RepoRoot, "tools", "MergeExport.Build", "build");
        if (packageLayout)
        {
            string package = Path.Combine(root, "package");
            Directory.CreateDirectory(Path.Combine(package, "build"));
            Directory.CreateDirectory(Path.Combine(package, "tasks", "net10.0"));
            foreach (string file in Directory.GetFiles(buildFolder))
            {
                File.Copy(file, Path.Combine(package, "build", Path.GetFileName(file)));
            }
            foreach (string assembly in new[] { "OnnxLora.MergeExport.Build.dll", "OnnxLora.Core.dll" })
            {
                File.Copy(Path.Combine(TestBin, assembly), Path.Combine(package, "tasks", "net10.0", assembly));
            }
            buildFolder = Path.Combine(package, "build");
        }
        var project = new ConsumerProject(root, buildFolder, packageLayout);
        project.SetItem(itemAttributes);
        return project;
    }

    /// <summary>Rewrites the project file with a new LoraMergeExport item.</summary>
    public void SetItem(string itemAttributes)
    {
        string build = _buildFolder;
        File.WriteAllText(ProjectFile, $"""
            <Project Sdk="Microsoft.NET.Sdk">
              <PropertyGroup>
                <TargetFramework>net10.0</TargetFramework>
              </PropertyGroup>
              <Import Project="{build}/OnnxLora.MergeExport.Build.props" />
              <ItemGroup>
                <LoraMergeExport Include="adapters/x" {itemAttributes} />
              </ItemGroup>
              <Import Project="{build}/OnnxLora.MergeExport.Build.targets" />
            </Project>
            """);
    }

    /// <summary>Selects what the fake tool does for this adapter (see FakeTool/Program.cs): pass, gate-fail, error, ...</summary>
    public void SetFakeMode(string mode) => File.WriteAllText(Path.Combine(AdapterFolder, "fake-mode"), mode);

    /// <summary>Replaces adapters/x with a copy of the committed sample adapter (models/tiny-llama-lora).</summary>
    public void UseSampleAdapter()
    {
        Directory.Delete(AdapterFolder, recursive: true);
        Directory.CreateDirectory(AdapterFolder);
        foreach (string file in Directory.GetFiles(Path.Combine(RepoRoot, "models", "tiny-llama-lora")))
        {
            File.Copy(file, Path.Combine(AdapterFolder, Path.GetFileName(file)));
        }
    }

    /// <summary>
    /// Runs <c>dotnet build</c> on the project with the fake tool (or <paramref name="toolPath"/>): the whole
    /// build when <paramref name="wholeBuild"/>, else only the LoraMergeExport target (no compile: ~3x faster).
    /// </summary>
    public BuildOutcome Build(string? toolPath = null, bool wholeBuild = false) => Build(toolPath, wholeBuild, whileRunning: null);

    /// <summary>
    /// <see cref="Build(string?, bool)"/> of the LoraMergeExport target that calls <paramref name="whileRunning"/>
    /// with the build's process once it has started (to interrupt it).
    /// </summary>
    public BuildOutcome Build(string? toolPath, bool wholeBuild, Action<Process>? whileRunning)
    {
        var info = new ProcessStartInfo("dotnet")
        {
            WorkingDirectory = Root,
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
        };
        foreach (string arg in new[]
        {
            "build", ProjectFile, "-nologo", "-tl:off", "-v:n", "-nr:false",
            "-p:UseSharedCompilation=false",
            $"-p:MergeExportToolPath={toolPath ?? FakeToolDll}",
        })
        {
            info.ArgumentList.Add(arg);
        }
        if (!_packageLayout)
        {
            info.ArgumentList.Add($"-p:OnnxLoraMergeExportTaskAssembly={Path.Combine(TestBin, "OnnxLora.MergeExport.Build.dll")}");
        }
        if (!wholeBuild)
        {
            info.ArgumentList.Add("-t:LoraMergeExport");
        }
        // The test host runs under `dotnet test`, whose MSBuild variables must not leak into this build.
        foreach (string name in info.Environment.Keys.Where(k => k.StartsWith("MSBUILD", StringComparison.OrdinalIgnoreCase)).ToList())
        {
            info.Environment.Remove(name);
        }
        info.Environment["FAKE_MERGE_EXPORT_LOG"] = InvocationLog;
        info.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        info.Environment["DOTNET_NOLOGO"] = "1";

        using var process = Process.Start(info)!;
        process.StandardInput.Close();
        var log = new StringBuilder();
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        whileRunning?.Invoke(process);
        if (!process.WaitForExit(TimeSpan.FromMinutes(4)))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"dotnet build of {ProjectFile} did not finish in 4 minutes.");
        }
        log.Append(stdout.GetAwaiter().GetResult()).Append(stderr.GetAwaiter().GetResult());
        return new BuildOutcome(process.ExitCode, log.ToString());
    }

    public void Dispose()
    {
        try
        {
            Directory.Delete(Root, recursive: true);
        }
        catch (IOException)
        {
            // Best effort: a leftover temp folder is harmless.
        }
    }

    private static string FindRepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "OnnxLora.sln")))
            {
                return dir.FullName;
            }
        }
        throw new DirectoryNotFoundException($"OnnxLora.sln not found above {AppContext.BaseDirectory}.");
    }
}
