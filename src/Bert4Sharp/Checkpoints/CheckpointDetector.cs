namespace Bert4Sharp.Checkpoints;

using System.Text.Json;
using Bert4Sharp.Checkpoints.Onnx;
using Bert4Sharp.Checkpoints.TensorFlow;
using Bert4Sharp.Checkpoints.Torch;

/// <summary>Finds the checkpoint behind a path and picks the reader from the file's first bytes.</summary>
internal static class CheckpointDetector
{
    /// <summary>File names tried, in order, when a directory is given.</summary>
    static readonly string[] DirectoryCandidates =
    [
        "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json", "model.onnx",
    ];

    public static Checkpoint Open(string path, bool memoryMap)
    {
        ByteSource OpenSource(string p) => memoryMap ? ByteSource.MapFile(p) : ByteSource.OpenFile(p);
        if (Directory.Exists(path))
        {
            foreach (string c in DirectoryCandidates)
            {
                string p = System.IO.Path.Combine(path, c);
                if (File.Exists(p)) return Open(p, memoryMap);
            }
            if (TensorFlowCheckpoint.ResolvePrefix(path) is not null) return TensorFlowCheckpoint.OpenPrefix(path);
            var any = Directory.GetFiles(path, "*.safetensors").Concat(Directory.GetFiles(path, "*.bin")).Concat(Directory.GetFiles(path, "*.pt"))
                .Order(StringComparer.Ordinal).FirstOrDefault()
                ?? Directory.GetFiles(path, "*.onnx").Order(StringComparer.Ordinal).FirstOrDefault();
            if (any is not null) return Open(any, memoryMap);
            throw new FileNotFoundException($"{path}: no checkpoint found (looked for {string.Join(", ", DirectoryCandidates)}, a TensorFlow 'checkpoint'/*.index, *.safetensors, *.bin, *.pt, *.onnx)", path);
        }
        if (path.EndsWith(".index.json", StringComparison.Ordinal) && File.Exists(path)) return ShardedCheckpoint.OpenIndex(path, memoryMap);
        if (!File.Exists(path) || path.EndsWith(".index", StringComparison.Ordinal) || System.IO.Path.GetFileName(path) == "checkpoint")
        {
            if (TensorFlowCheckpoint.ResolvePrefix(path) is not null) return TensorFlowCheckpoint.OpenPrefix(path);
            if (!File.Exists(path)) throw new FileNotFoundException($"{path}: no such file or directory", path);
        }
        if (TensorFlowCheckpoint.ResolvePrefix(path) is string prefix && path != prefix + ".index" && path.Contains(".data-", StringComparison.Ordinal))
            return TensorFlowCheckpoint.OpenPrefix(prefix);
        return Open(OpenSource(path), ownsSource: true, memoryMap);
    }

    public static Checkpoint Open(ByteSource source, bool ownsSource, bool memoryMap = false)
    {
        try
        {
            Span<byte> head = stackalloc byte[16];
            int n = (int)Math.Min(16, source.Length);
            source.Read(0, head[..n]);
            head = head[..n];
            // ONNX has no magic number: trust the extension (also for damaged files), else sniff the ModelProto's first fields.
            if (source.Name.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase))
                return OnnxCheckpoint.Open(source, ownsSource, memoryMap);
            if (n >= 4 && head[0] == 'P' && head[1] == 'K' && head[2] == 3 && head[3] == 4)
                return TorchCheckpoint.OpenZip(source, ownsSource);
            if (TorchCheckpoint.LooksLikeLegacy(head))
                return TorchCheckpoint.OpenLegacy(source, ownsSource);
            if (n >= 9 && head[8] == (byte)'{')
                return new SafetensorsCheckpoint(source, ownsSource);
            if (source.Length >= 48)
            {
                var tail = source.ReadArray(source.Length - 8, 8);
                if (BitConverter.ToUInt64(tail) == 0xdb4775248b80fb57UL)
                    throw new CheckpointFormatException(source.Name, null, "this is a TensorFlow checkpoint index; open it by its .index path, prefix or directory so the data shards can be found");
            }
            if (OnnxCheckpoint.LooksLikeModel(head))
                return OnnxCheckpoint.Open(source, ownsSource, memoryMap);
            throw new CheckpointFormatException(source.Name, null,
                "unknown checkpoint format: not safetensors (8-byte length + '{'), not a torch.save zip ('PK') or legacy pickle (0x80 0x02), not a TensorFlow index, not an ONNX model (.onnx)");
        }
        catch
        {
            if (ownsSource) source.Dispose();
            throw;
        }
    }
}

/// <summary>
/// Several checkpoint files joined by a <c>*.index.json</c> (<c>{"metadata": …, "weight_map": {name: file}}</c>),
/// as Hugging Face writes large models (safetensors or PyTorch shards).
/// </summary>
public sealed class ShardedCheckpoint : Checkpoint
{
    readonly string path;
    readonly List<Checkpoint> parts = [];
    readonly List<TensorEntry> entries = [];
    readonly Dictionary<string, string> metadata = [];

    bool memoryMap;

    ShardedCheckpoint(string path) => this.path = path;

    /// <summary>Opens the index and every shard it names; checks that each mapped tensor is in its shard.</summary>
    public static ShardedCheckpoint OpenIndex(string indexPath, bool memoryMap = false)
    {
        var ck = new ShardedCheckpoint(indexPath) { memoryMap = memoryMap };
        try { ck.Load(); }
        catch { ck.Dispose(); throw; }
        return ck;
    }

    void Load()
    {
        byte[] json = File.ReadAllBytes(path);
        JsonDocument doc;
        try { doc = JsonDocument.Parse(json); }
        catch (JsonException e) { throw new CheckpointFormatException(path, null, $"not valid JSON: {e.Message}", e); }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object || !doc.RootElement.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
                throw new CheckpointFormatException(path, "weight_map", "missing object 'weight_map' {tensor name: shard file}");
            if (doc.RootElement.TryGetProperty("metadata", out var meta) && meta.ValueKind == JsonValueKind.Object)
                foreach (var m in meta.EnumerateObject()) metadata[m.Name] = m.Value.ToString();
            string dir = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!;
            var opened = new Dictionary<string, Checkpoint>(StringComparer.Ordinal);
            foreach (var p in map.EnumerateObject())
            {
                string shard = p.Value.GetString() ?? "";
                if (shard.Length == 0 || shard.Contains('/') || shard.Contains('\\') || shard == "..")
                    throw new CheckpointFormatException(path, p.Name, $"shard file '{shard}' must be a plain file name in the same directory");
                if (!opened.TryGetValue(shard, out var part))
                {
                    string shardPath = System.IO.Path.Combine(dir, shard);
                    if (!File.Exists(shardPath)) throw new CheckpointFormatException(path, p.Name, $"shard file '{shard}' does not exist");
                    part = CheckpointDetector.Open(memoryMap ? ByteSource.MapFile(shardPath) : ByteSource.OpenFile(shardPath), ownsSource: true, memoryMap);
                    opened[shard] = part;
                    parts.Add(part);
                }
                if (!part.TryGetEntry(p.Name, out var e))
                    throw new CheckpointFormatException(path, p.Name, $"the weight map puts this tensor in '{shard}', which does not contain it");
                entries.Add(e);
            }
        }
    }

    /// <inheritdoc/>
    public override string Path => path;
    /// <inheritdoc/>
    public override CheckpointFormat Format => CheckpointFormat.Sharded;
    /// <inheritdoc/>
    public override IReadOnlyList<TensorEntry> Entries => entries;
    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, string> Metadata => metadata;
    /// <summary>The shard files, in the order first named by the weight map.</summary>
    public IReadOnlyList<Checkpoint> Parts => parts;

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        if (disposing) foreach (var p in parts) p.Dispose();
    }
}
