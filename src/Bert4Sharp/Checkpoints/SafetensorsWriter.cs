namespace Bert4Sharp.Checkpoints;

using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using TorchSharp;

/// <summary>A tensor to write: its name, dtype, shape and a callback that fills its bytes.</summary>
/// <param name="Name">Tensor name.</param>
/// <param name="DType">Element type.</param>
/// <param name="Shape">Dimensions.</param>
/// <param name="Fill">Writes exactly <c>ElementCount × ElementSize</c> bytes, row-major, little-endian.</param>
public sealed record TensorSource(string Name, TensorDType DType, long[] Shape, Action<Span<byte>> Fill)
{
    /// <summary>Bytes the tensor occupies.</summary>
    public long ByteCount => ShapeMath.ElementCount(Shape) * DType.ElementSize();

    /// <summary>A source that copies from a checkpoint entry (lazily, when written).</summary>
    public static TensorSource From(Checkpoint checkpoint, TensorEntry entry) =>
        new(entry.Name, entry.DType, entry.Shape.ToArray(), span => checkpoint.ReadInto(entry, span));

    /// <summary>A source that copies from a TorchSharp tensor (moved to the CPU and made contiguous when written).</summary>
    public static TensorSource From(string name, torch.Tensor tensor) =>
        new(name, TensorDTypeExtensions.FromScalarType(tensor.dtype), tensor.shape, span =>
        {
            using var cpu = tensor.detach().cpu().contiguous();
            cpu.bytes.CopyTo(span);
        });

    /// <summary>A source over bytes already in memory.</summary>
    public static TensorSource From(string name, TensorDType dtype, long[] shape, ReadOnlyMemory<byte> data) =>
        new(name, dtype, shape, span => data.Span.CopyTo(span));
}

/// <summary>Options for <see cref="SafetensorsWriter"/>.</summary>
public sealed record SafetensorsWriteOptions
{
    /// <summary>String pairs stored under <c>__metadata__</c> (e.g. <c>format = pt</c>).</summary>
    public IReadOnlyDictionary<string, string>? Metadata { get; init; }

    /// <summary>When set, split into <c>model-0000i-of-0000n.safetensors</c> shards of at most this many data bytes plus an index.</summary>
    public long? MaxShardBytes { get; init; }

    /// <summary>Called after each tensor with (bytes written so far, total bytes).</summary>
    public Action<long, long>? Progress { get; init; }
}

/// <summary>
/// Writes safetensors files atomically (temp file + rename): the previous file stays intact until the
/// new one is complete. Tensors are ordered by element size (largest first), then name, so every
/// tensor is aligned to its element size, as the reference implementation does.
/// </summary>
public static class SafetensorsWriter
{
    /// <summary>Writes <paramref name="tensors"/> to <paramref name="path"/>.</summary>
    /// <exception cref="ArgumentException">Duplicate names or an unwritable dtype.</exception>
    public static void Write(string path, IEnumerable<TensorSource> tensors, SafetensorsWriteOptions? options = null)
    {
        options ??= new();
        var list = Order(tensors);
        long total = list.Sum(t => t.ByteCount), done = 0;
        WriteFile(path, list, options.Metadata, ref done, total, options.Progress);
    }

    /// <summary>
    /// Writes a model directory: one <c>model.safetensors</c>, or shards and
    /// <c>model.safetensors.index.json</c> when <see cref="SafetensorsWriteOptions.MaxShardBytes"/> is set
    /// and exceeded. Returns the files written.
    /// </summary>
    public static IReadOnlyList<string> WriteModel(string directory, IEnumerable<TensorSource> tensors, SafetensorsWriteOptions? options = null)
    {
        options ??= new();
        Directory.CreateDirectory(directory);
        var list = Order(tensors);
        long total = list.Sum(t => t.ByteCount), done = 0;
        var shards = new List<List<TensorSource>> { new() };
        long current = 0;
        foreach (var t in list)
        {
            if (options.MaxShardBytes is long max && current > 0 && current + t.ByteCount > max)
            {
                shards.Add([]);
                current = 0;
            }
            shards[^1].Add(t);
            current += t.ByteCount;
        }
        if (shards.Count == 1)
        {
            string single = System.IO.Path.Combine(directory, "model.safetensors");
            WriteFile(single, shards[0], options.Metadata, ref done, total, options.Progress);
            return [single];
        }
        var written = new List<string>();
        var weightMap = new SortedDictionary<string, string>(StringComparer.Ordinal);
        for (int i = 0; i < shards.Count; i++)
        {
            string name = $"model-{i + 1:D5}-of-{shards.Count:D5}.safetensors";
            string file = System.IO.Path.Combine(directory, name);
            WriteFile(file, shards[i], options.Metadata, ref done, total, options.Progress);
            foreach (var t in shards[i]) weightMap[t.Name] = name;
            written.Add(file);
        }
        var index = new Dictionary<string, object>
        {
            ["metadata"] = new Dictionary<string, object> { ["total_size"] = total },
            ["weight_map"] = weightMap,
        };
        string indexPath = System.IO.Path.Combine(directory, "model.safetensors.index.json");
        AtomicFile.WriteAllText(indexPath, JsonSerializer.Serialize(index, new JsonSerializerOptions { WriteIndented = true }));
        written.Add(indexPath);
        return written;
    }

    static List<TensorSource> Order(IEnumerable<TensorSource> tensors)
    {
        var list = tensors.ToList();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var t in list)
        {
            if (t.DType == TensorDType.String) throw new ArgumentException($"tensor '{t.Name}': string tensors cannot be written to safetensors");
            if (t.Name == "__metadata__") throw new ArgumentException("'__metadata__' is reserved and cannot name a tensor");
            if (!seen.Add(t.Name)) throw new ArgumentException($"duplicate tensor name '{t.Name}'");
        }
        return list.OrderByDescending(t => t.DType.ElementSize()).ThenBy(t => t.Name, StringComparer.Ordinal).ToList();
    }

    static void WriteFile(string path, List<TensorSource> list, IReadOnlyDictionary<string, string>? metadata,
        ref long done, long total, Action<long, long>? progress)
    {
        var header = new MemoryStream();
        using (var w = new Utf8JsonWriter(header))
        {
            w.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                w.WriteStartObject("__metadata__");
                foreach (var (k, v) in metadata) w.WriteString(k, v);
                w.WriteEndObject();
            }
            long offset = 0;
            foreach (var t in list)
            {
                w.WriteStartObject(t.Name);
                w.WriteString("dtype", t.DType.SafetensorsName());
                w.WriteStartArray("shape");
                foreach (long d in t.Shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(offset);
                w.WriteNumberValue(offset + t.ByteCount);
                w.WriteEndArray();
                w.WriteEndObject();
                offset += t.ByteCount;
            }
            w.WriteEndObject();
        }
        // Pad the header with spaces to a multiple of 8 so the data section starts aligned.
        while (header.Length % 8 != 0) header.WriteByte((byte)' ');

        long doneLocal = done;
        AtomicFile.Write(path, stream =>
        {
            Span<byte> len = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)header.Length);
            stream.Write(len);
            header.Position = 0;
            header.CopyTo(stream);
            byte[] buffer = [];
            foreach (var t in list)
            {
                long n = t.ByteCount;
                if (n > Array.MaxLength) throw new ArgumentException($"tensor '{t.Name}' is larger than 2 GB; shard it");
                if (buffer.Length < n) buffer = GC.AllocateUninitializedArray<byte>((int)n);
                t.Fill(buffer.AsSpan(0, (int)n));
                stream.Write(buffer, 0, (int)n);
                doneLocal += n;
                progress?.Invoke(doneLocal, total);
            }
        });
        done = doneLocal;
    }
}

/// <summary>Writes files so that a crash or a full disk never leaves a half-written file under the final name.</summary>
public static class AtomicFile
{
    /// <summary>Writes through <paramref name="write"/> into a temporary file beside <paramref name="path"/>, flushes it to disk, then renames it over <paramref name="path"/>.</summary>
    public static void Write(string path, Action<Stream> write)
    {
        string full = System.IO.Path.GetFullPath(path);
        string dir = System.IO.Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(dir);
        string tmp = System.IO.Path.Combine(dir, $".{System.IO.Path.GetFileName(full)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
            {
                var target = WrapForTesting?.Invoke(fs) ?? fs;
                write(target);
                target.Flush();
                fs.Flush(flushToDisk: true);
            }
            File.Move(tmp, full, overwrite: true);
        }
        catch
        {
            try { File.Delete(tmp); } catch (IOException) { }
            throw;
        }
    }

    /// <summary>Tests wrap the temporary file's stream to simulate a full disk mid-write.</summary>
    [ThreadStatic] internal static Func<Stream, Stream>? WrapForTesting;

    /// <summary>Atomically writes UTF-8 text.</summary>
    public static void WriteAllText(string path, string text) =>
        Write(path, s => s.Write(Encoding.UTF8.GetBytes(text)));
}
