namespace Bert4Sharp.Checkpoints;

using TorchSharp;

/// <summary>The on-disk formats Bert4Sharp reads.</summary>
public enum CheckpointFormat
{
    /// <summary>One <c>.safetensors</c> file.</summary>
    Safetensors,
    /// <summary>Several files joined by a <c>*.index.json</c> weight map (safetensors or PyTorch shards).</summary>
    Sharded,
    /// <summary><c>torch.save</c> zip format (PyTorch ≥ 1.6).</summary>
    TorchZip,
    /// <summary><c>torch.save</c> legacy format (magic number, pickles, appended storages).</summary>
    TorchLegacy,
    /// <summary>TensorFlow tensor bundle (<c>.index</c> + <c>.data-NNNNN-of-NNNNN</c>), as bert4keras-era models ship.</summary>
    TensorFlowBundle,
    /// <summary>ONNX model (<c>.onnx</c>): the graph's initializers, anonymous Linear weights renamed (see <see cref="Onnx.OnnxCheckpoint"/>).</summary>
    Onnx,
}

/// <summary>
/// One view over every checkpoint format: name → dtype, shape and lazily read data. Opening reads only
/// headers and indexes; tensor bytes are read when asked for, so a 1 GB file never needs 2 GB of RAM.
/// </summary>
public abstract class Checkpoint : IDisposable
{
    Dictionary<string, TensorEntry>? byName;

    /// <summary>The path that was opened.</summary>
    public abstract string Path { get; }

    /// <summary>The detected format.</summary>
    public abstract CheckpointFormat Format { get; }

    /// <summary>Every tensor, in file order.</summary>
    public abstract IReadOnlyList<TensorEntry> Entries { get; }

    /// <summary>Free-form metadata (safetensors <c>__metadata__</c>, TF bundle header, pickle sys_info…).</summary>
    public virtual IReadOnlyDictionary<string, string> Metadata { get; } = new Dictionary<string, string>();

    /// <summary>Remarks about the file as a whole (e.g. "data shard absent"), for <c>b4s inspect</c>.</summary>
    public virtual IReadOnlyList<string> Notes { get; } = [];

    /// <summary>Looks a tensor up by name.</summary>
    /// <exception cref="KeyNotFoundException">No tensor has that name.</exception>
    public TensorEntry this[string name] => TryGetEntry(name, out var e)
        ? e : throw new KeyNotFoundException($"{Path}: no tensor named '{name}' (it has {Entries.Count})");

    /// <summary>Looks a tensor up by name.</summary>
    public bool TryGetEntry(string name, out TensorEntry entry)
    {
        byName ??= Entries.GroupBy(e => e.Name).ToDictionary(g => g.Key, g => g.First());
        return byName.TryGetValue(name, out entry!);
    }

    /// <summary>Writes a tensor's bytes (contiguous, row-major, little-endian) into <paramref name="destination"/>.</summary>
    /// <exception cref="TensorDataUnavailableException">The data is truncated or its shard is missing.</exception>
    /// <exception cref="CheckpointException">The data is corrupt.</exception>
    public void ReadInto(TensorEntry entry, Span<byte> destination)
    {
        EnsureReadable(entry);
        entry.Locator.ReadInto(entry, destination);
    }

    // Raise the "truncated / shard missing" error before anything is allocated for the tensor.
    static void EnsureReadable(TensorEntry entry)
    {
        if (entry.Locator is UnavailableLocator) entry.Locator.ReadInto(entry, default);
    }

    /// <summary>A tensor's bytes in a new array.</summary>
    public byte[] ReadBytes(TensorEntry entry)
    {
        if (entry.DType == TensorDType.String)
            throw new CheckpointFormatException(Path, entry.Name, "string tensors carry no numeric data and cannot be read as bytes");
        EnsureReadable(entry);
        if (entry.ByteCount > Array.MaxLength)
            throw new CheckpointFormatException(Path, entry.Name, $"{entry.ByteCount} bytes do not fit one array; use ReadTensor");
        var b = GC.AllocateUninitializedArray<byte>((int)entry.ByteCount);
        ReadInto(entry, b);
        return b;
    }

    /// <summary>A tensor's bytes in a new array.</summary>
    public byte[] ReadBytes(string name) => ReadBytes(this[name]);

    /// <summary>Reads a tensor into a new TorchSharp tensor on the CPU (or <paramref name="device"/>), without intermediate copies.</summary>
    public torch.Tensor ReadTensor(TensorEntry entry, torch.Device? device = null)
    {
        if (entry.DType == TensorDType.String)
            throw new CheckpointFormatException(Path, entry.Name, "string tensors cannot be loaded into TorchSharp");
        EnsureReadable(entry);
        var t = torch.empty(entry.Shape.ToArray(), entry.DType.ToScalarType());
        try
        {
            if (entry.ByteCount > 0)
            {
                var span = t.bytes;
                Runtime.HugePages.Advise(span);
                ReadInto(entry, span);
            }
        }
        catch
        {
            t.Dispose();
            throw;
        }
        if (device is null || device.type == DeviceType.CPU) return t;
        using (t) return t.to(device);
    }

    /// <summary>Reads a tensor by name.</summary>
    public torch.Tensor ReadTensor(string name, torch.Device? device = null) => ReadTensor(this[name], device);

    /// <summary>
    /// Opens a checkpoint, detecting its format: a <c>.safetensors</c> file, a <c>*.index.json</c>, a
    /// PyTorch <c>.bin</c>/<c>.pt</c> (zip or legacy), a TensorFlow <c>.index</c>, prefix or
    /// <c>checkpoint</c> file, an ONNX <c>.onnx</c> model, or a model directory holding any of these.
    /// </summary>
    /// <exception cref="FileNotFoundException">Nothing readable at <paramref name="path"/>.</exception>
    /// <exception cref="CheckpointException">The file is corrupt or of an unknown format.</exception>
    public static Checkpoint Open(string path) => CheckpointDetector.Open(path, memoryMap: false);

    /// <summary>
    /// Opens a checkpoint with the file memory-mapped instead of read with positioned reads: tensor
    /// bytes can then be viewed without copying (<see cref="TryGetSpan"/>). Same detection as <see cref="Open(string)"/>.
    /// </summary>
    public static Checkpoint OpenMapped(string path) => CheckpointDetector.Open(path, memoryMap: true);

    /// <summary>
    /// Zero-copy view of a tensor's bytes when the checkpoint is memory-mapped or in memory and the
    /// tensor is stored contiguously (safetensors always, TensorFlow bundles, contiguous PyTorch views).
    /// The span is valid until the checkpoint is disposed.
    /// </summary>
    public bool TryGetSpan(TensorEntry entry, out ReadOnlySpan<byte> span)
    {
        span = default;
        return entry.ByteCount <= int.MaxValue && entry.Locator.TryGetSpan(entry, out span);
    }

    /// <summary>Opens a single-file checkpoint held in memory (tests, fuzzing, downloads).</summary>
    public static Checkpoint Open(ReadOnlyMemory<byte> data, string name) => CheckpointDetector.Open(ByteSource.FromMemory(data, name), ownsSource: true);

    /// <inheritdoc/>
    public void Dispose()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    /// <summary>Releases file handles.</summary>
    protected virtual void Dispose(bool disposing) { }
}
