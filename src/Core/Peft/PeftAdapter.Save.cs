using OnnxLora.Core.IO;
using OnnxLora.Core.Safetensors;

namespace OnnxLora.Core.Peft;

public sealed partial class PeftAdapter
{
    /// <summary>The safetensors header metadata PEFT (via safetensors.torch.save_file) writes.</summary>
    public static IReadOnlyDictionary<string, string> WeightsMetadata { get; } = new Dictionary<string, string> { ["format"] = "pt" };

    /// <summary>
    /// Writes an adapter folder that PEFT loads with <c>PeftModel.from_pretrained</c>:
    /// adapter_config.json (<see cref="PeftAdapterConfig.ToJson"/>) and adapter_model.safetensors
    /// holding <paramref name="tensors"/> (keys sorted, <c>__metadata__ {"format": "pt"}</c>).
    /// </summary>
    /// <remarks>
    /// Atomic as a folder: both files are written into a hidden temporary folder beside
    /// <paramref name="directory"/>, the result is re-opened with <see cref="Load"/> (so an
    /// inconsistent adapter is never published), and the folder is then renamed into place. With
    /// <paramref name="overwrite"/>, an existing folder is first renamed aside and deleted after the
    /// new one is in place. Nothing appears under <paramref name="directory"/> when any step fails.
    /// </remarks>
    /// <exception cref="OnnxLoraException">Bad input: the destination exists and <paramref name="overwrite"/> is false, or the
    /// tensors do not form a valid adapter for <paramref name="config"/>.</exception>
    public static void Save(string directory, PeftAdapterConfig config, IReadOnlyList<(TensorSpec Spec, ReadOnlyMemory<byte> Data)> tensors, bool overwrite = false)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(tensors);
        directory = System.IO.Path.GetFullPath(directory.TrimEnd('/', '\\'));
        if (!overwrite && (System.IO.Directory.Exists(directory) || File.Exists(directory)))
        {
            throw OnnxLoraException.OutputExists(directory);
        }
        string parent = System.IO.Path.GetDirectoryName(directory)!;
        System.IO.Directory.CreateDirectory(parent);
        string temp = AtomicFile.TempNameBeside(directory);
        System.IO.Directory.CreateDirectory(temp);
        try
        {
            config.Save(System.IO.Path.Combine(temp, PeftAdapterConfig.FileName));
            var sorted = tensors.OrderBy(t => t.Spec.Name, StringComparer.Ordinal).ToList();
            SafetensorsWriter.Save(System.IO.Path.Combine(temp, WeightsFileName), sorted, WeightsMetadata);
            using (Load(temp))
            {
                // Validation only: an adapter that would not load is never published.
            }
            PublishDirectory(temp, directory, overwrite);
        }
        catch
        {
            TryDeleteDirectory(temp);
            throw;
        }
    }

    /// <summary>Renames a finished temporary folder to its final name (replacing an old one only when allowed).</summary>
    internal static void PublishDirectory(string temp, string directory, bool overwrite)
    {
        if (!System.IO.Directory.Exists(directory) && !File.Exists(directory))
        {
            System.IO.Directory.Move(temp, directory);
            return;
        }
        if (!overwrite)
        {
            throw OnnxLoraException.OutputAppeared(directory);
        }
        string old = AtomicFile.TempNameBeside(directory) + ".old";
        System.IO.Directory.Move(directory, old);
        System.IO.Directory.Move(temp, directory);
        TryDeleteDirectory(old);
    }

    private static void TryDeleteDirectory(string path)
    {
        try
        {
            if (System.IO.Directory.Exists(path))
            {
                System.IO.Directory.Delete(path, recursive: true);
            }
        }
        catch (IOException)
        {
            // Best effort: a hidden leftover folder never has the final name.
        }
        catch (UnauthorizedAccessException)
        {
            // Same as above.
        }
    }
}
