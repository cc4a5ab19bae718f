using System.Text.Json;
using Microsoft.Win32.SafeHandles;
using OnnxLora.Core;
using OnnxLora.Core.IO;
using OnnxLora.Core.Safetensors;
using OnnxLora.Merge.Internals;

namespace OnnxLora.Merge;

/// <summary>What a checkpoint merge wrote.</summary>
/// <param name="OutputDirectory">The published folder.</param>
/// <param name="TensorsMerged">Tensors changed by adapter modules.</param>
/// <param name="TensorsReplaced">Tensors replaced by saved adapter tensors.</param>
/// <param name="TensorsCopied">Tensors written unchanged (or only converted).</param>
/// <param name="BytesWritten">Tensor data bytes written.</param>
public sealed record CheckpointMergeResult(string OutputDirectory, int TensorsMerged, int TensorsReplaced, int TensorsCopied, long BytesWritten);

/// <summary>
/// Merges adapters into a Hugging Face safetensors checkpoint (one file or shards + index),
/// streaming tensor by tensor: the output has the same shard files, index, keys, shapes and
/// metadata (dtypes per <see cref="MergeOptions.OutputDType"/>); peak memory stays near twice the
/// largest merged tensor in fp32 (one written while the next is merged). The output folder is built beside the destination and renamed into place only
/// when complete.
/// </summary>
/// <remarks>
/// The checkpoint is opened and validated with <see cref="SafetensorsCheckpoint"/>; tensor bytes are
/// then read with positioned reads (pread) into bounded buffers rather than through the memory map,
/// so file pages do not accumulate in the process's resident set on large checkpoints. Tensors left
/// unchanged are copied from file to file by the kernel (<see cref="FileRange"/>: copy_file_range on
/// Linux, as File.Copy does), so a merge costs about a copy of the files plus the merged tensors' ΔW
/// (computed on all cores by Core's DeltaMath).
/// </remarks>
public static class CheckpointMerger
{
    private const int CopyChunkBytes = 16 << 20;

    /// <summary>Writes waiting while the next tensor is computed, and the size of each encoded chunk written behind.</summary>
    private const int WritesInFlight = 3, WriteChunkBytes = 4 << 20;

    /// <summary>Plans the merge without writing anything (the "inspect" view).</summary>
    public static MergePlan Plan(string checkpointDirectory, IReadOnlyList<WeightedAdapter> adapters, MergeOptions? options = null)
    {
        using var checkpoint = SafetensorsCheckpoint.Open(checkpointDirectory);
        return MergePlan.Create(adapters, checkpoint, options);
    }

    /// <summary>Merges <paramref name="adapters"/> into the checkpoint in <paramref name="checkpointDirectory"/>, writing <paramref name="outputDirectory"/>.</summary>
    /// <exception cref="OnnxLoraException">Bad input: a malformed input, a module that maps to no tensor, (safe mode) a non-finite
    /// merged value (the message names the tensor), or the output exists and overwrite is off.</exception>
    public static CheckpointMergeResult Merge(string checkpointDirectory, IReadOnlyList<WeightedAdapter> adapters, string outputDirectory, MergeOptions? options = null)
    {
        options ??= MergeOptions.Default;
        using var checkpoint = SafetensorsCheckpoint.Open(checkpointDirectory);
        string output = Path.GetFullPath(outputDirectory.TrimEnd('/', '\\'));
        if (string.Equals(output, checkpoint.Directory.TrimEnd('/'), StringComparison.Ordinal))
        {
            throw MergeThrow.Option(nameof(outputDirectory), $"{output} is the checkpoint itself; write the merge to another folder");
        }
        var plan = MergePlan.Create(adapters, checkpoint, options);
        AtomicDirectory.CheckDestination(output, options.Overwrite);
        DiskSpace.EnsureAvailable(output, EstimatedOutputBytes(checkpoint, options.OutputDType), "the merged checkpoint");
        using var folder = AtomicDirectory.Create(output, options.Overwrite);
        int merged = 0, replaced = 0, copied = 0;
        long bytes = 0;
        var written = new Dictionary<string, (string Shard, long Bytes)>(StringComparer.Ordinal);
        byte[] copyBuffer = new byte[CopyChunkBytes];
        // Writes (kernel copies included, in tensor order) run behind on their own thread: the next tensor is read and merged
        // meanwhile. One pipeline for every shard, so its two whole-tensor buffers are made once.
        using var behind = new WriteBehind(WritesInFlight, WriteChunkBytes);
        foreach (var shard in checkpoint.Shards)
        {
            string shardName = Path.GetFileName(shard.Path);
            var specs = shard.Tensors.Select(t => new TensorSpec(t.Name, OutputTypeOf(t.DType, options.OutputDType), t.Shape)).ToList();
            using var handle = File.OpenHandle(shard.Path, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.SequentialScan);
            using var writer = SafetensorsWriter.Create(Path.Combine(folder.TempPath, shardName), specs, shard.Metadata);
            try
            {
                for (int i = 0; i < shard.Tensors.Count; i++)
                {
                    var t = shard.Tensors[i];
                    var spec = specs[i];
                    long offset = shard.DataStart + t.DataOffset;
                    if (i + 1 < shard.Tensors.Count)
                    {
                        // The next tensor's bytes come from the disk while this one is merged (a model larger than the page cache).
                        FileRange.StartPrefetch(shard.Path, shard.DataStart + shard.Tensors[i + 1].DataOffset, shard.Tensors[i + 1].ByteLength);
                    }
                    if (plan.Touches(t.Name))
                    {
                        MergeTensor(plan, checkpoint.Directory, handle, offset, t, spec, writer, behind);
                        if (plan.ReplacementFor(t.Name) is not null)
                        {
                            replaced++;
                        }
                        if (plan.EntriesFor(t.Name).Count > 0 || plan.BiasEntriesFor(t.Name).Count > 0)
                        {
                            merged++;
                        }
                    }
                    else if (spec.DType != t.DType)
                    {
                        ConvertTensor(checkpoint.Directory, handle, offset, t, spec, writer, behind, options.SafeMode, copyBuffer);
                        copied++;
                    }
                    else
                    {
                        // Unchanged bytes: copied file to file by the kernel (copy_file_range), as File.Copy does.
                        behind.Enqueue(() => writer.CopyFrom(t.Name, handle, offset, t.ByteLength));
                        copied++;
                    }
                    bytes += spec.ByteLength;
                    written[t.Name] = (shardName, spec.ByteLength);
                }
                behind.Drain();
            }
            catch
            {
                // Stop the writes before the shard's file and handle are disposed under them.
                behind.Dispose();
                throw;
            }
            writer.Commit();
        }
        behind.Complete();
        if (checkpoint.IndexPath is not null)
        {
            WriteIndex(checkpoint, Path.Combine(folder.TempPath, SafetensorsCheckpoint.IndexFileName), written);
        }
        if (options.CopyOtherFiles)
        {
            CopyOtherFiles(checkpoint, folder.TempPath);
        }
        folder.Commit();
        return new CheckpointMergeResult(output, merged, replaced, copied, bytes);
    }

    private static DType OutputTypeOf(DType input, DType? output) => !input.IsFloat() ? input : output ?? input;

    private static void MergeTensor(MergePlan plan, string where, SafeFileHandle handle, long offset, TensorInfo t, TensorSpec spec, SafetensorsWriter writer,
        WriteBehind behind)
    {
        // The merge works on the whole tensor in fp32 (ΔW spans it); its bytes are read and decoded in chunks on all cores
        // and written in pieces (TensorBytes), so no byte array holds a whole tensor and tensors over 2 GiB of bytes (fp32
        // embeddings of large vocabularies) merge.
        if (t.ElementCount > Array.MaxLength)
        {
            throw MergeThrow.Invalid(where, $"tensor '{t.Name}'", $"{t.ElementCount} elements", $"at most {Array.MaxLength} elements to merge in one piece");
        }
        // The merged tensor is handed whole to the writer thread, so the next one is read and merged meanwhile. A merge formed
        // row by row (LoRA updates) goes through the cache a block of rows at a time; the others are merged in one fp32 copy.
        WriteBehind.PieceWriter write = (_, bytes) => writer.Write(t.Name, bytes);
        // Safe mode: a finite value refused overflowed the encoding; a NaN/Inf one (row path only) came out of the merge.
        Func<long, float, Exception>? refuse = plan.Options.SafeMode
            ? (index, value) => float.IsFinite(value)
                ? MergeThrow.NonFinite(where, t.Name, index, value, $"overflowing {spec.DType} after merging")
                : plan.NonFiniteAfterMerging(t.Name, index, value)
            : null;
        var rows = plan.RowUpdateFor(t.Name);
        if (TensorBytes.FitsRowMerge(rows, t.ElementCount, spec.DType))
        {
            TensorBytes.MergeRowsBehind(handle, offset, t.DType, spec.DType, rows, behind, write, refuse);
            return;
        }
        TensorBytes.EncodeWholeBehind(spec.DType, (int)t.ElementCount, behind,
            values =>
            {
                TensorBytes.ReadDecoded(handle, offset, t.DType, values);
                plan.ApplyTo(t.Name, values);
            },
            write,
            refuse);
    }

    private static void ConvertTensor(string where, SafeFileHandle handle, long offset, TensorInfo t, TensorSpec spec, SafetensorsWriter writer, WriteBehind behind,
        bool safe, byte[] inBuf)
    {
        int inSize = t.DType.SizeOf(), outSize = spec.DType.SizeOf();
        int perChunk = behind.BufferBytes / Math.Max(inSize, outSize);
        float[] values = new float[perChunk];
        long done = 0;
        while (done < t.ElementCount)
        {
            int n = (int)Math.Min(perChunk, t.ElementCount - done);
            FileRange.ReadExactly(handle, inBuf.AsSpan(0, n * inSize), offset + done * inSize);
            FloatCodec.Decode(t.DType, inBuf.AsSpan(0, n * inSize), values.AsSpan(0, n));
            byte[] outBuf = behind.RentBuffer();
            long overflow = FloatCodec.Encode(spec.DType, values.AsSpan(0, n), outBuf.AsSpan(0, n * outSize));
            if (safe && overflow >= 0)
            {
                throw MergeThrow.NonFinite(where, t.Name, done + overflow, values[overflow], $"overflowing {spec.DType} in conversion");
            }
            behind.EnqueueWrite(outBuf, n * outSize, data => writer.Write(t.Name, data.Span));
            done += n;
        }
    }

    private static void WriteIndex(SafetensorsCheckpoint checkpoint, string path, Dictionary<string, (string Shard, long Bytes)> written)
    {
        using var file = AtomicFile.Create(path);
        using (var json = new Utf8JsonWriter(file.Stream, new JsonWriterOptions { Indented = true }))
        {
            json.WriteStartObject();
            json.WriteStartObject("metadata");
            bool wroteTotal = false;
            foreach (var (key, value) in checkpoint.IndexMetadata)
            {
                if (key == "total_size")
                {
                    json.WriteNumber(key, written.Values.Sum(w => w.Bytes));
                    wroteTotal = true;
                    continue;
                }
                json.WritePropertyName(key);
                value.WriteTo(json);
            }
            if (!wroteTotal)
            {
                json.WriteNumber("total_size", written.Values.Sum(w => w.Bytes));
            }
            json.WriteEndObject();
            json.WriteStartObject("weight_map");
            foreach (var (name, (shard, _)) in written.OrderBy(kv => kv.Key, StringComparer.Ordinal))
            {
                json.WriteString(name, shard);
            }
            json.WriteEndObject();
            json.WriteEndObject();
        }
        file.Stream.WriteByte((byte)'\n');
        file.Commit();
    }

    private static void CopyOtherFiles(SafetensorsCheckpoint checkpoint, string destination)
    {
        var skip = new HashSet<string>(checkpoint.Shards.Select(s => Path.GetFileName(s.Path)), StringComparer.Ordinal)
        {
            SafetensorsCheckpoint.IndexFileName,
        };
        foreach (string file in Directory.EnumerateFiles(checkpoint.Directory))
        {
            string name = Path.GetFileName(file);
            if (skip.Contains(name) || name.StartsWith('.') || name.EndsWith(".safetensors", StringComparison.Ordinal) || name.EndsWith(".bin", StringComparison.Ordinal))
            {
                continue;
            }
            File.Copy(file, Path.Combine(destination, name));
        }
    }

    /// <summary>Bytes the merged checkpoint will take: every tensor at its output dtype.</summary>
    private static long EstimatedOutputBytes(SafetensorsCheckpoint checkpoint, DType? dtype) =>
        checkpoint.Tensors.Sum(t => !t.DType.IsFloat() || dtype is null ? t.ByteLength : t.ElementCount * dtype.Value.SizeOf());
}
