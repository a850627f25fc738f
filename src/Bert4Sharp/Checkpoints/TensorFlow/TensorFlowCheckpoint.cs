namespace Bert4Sharp.Checkpoints.TensorFlow;

using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

/// <summary>
/// Reader for TensorFlow tensor-bundle checkpoints (<c>model.ckpt.index</c> +
/// <c>model.ckpt.data-00000-of-00001</c>), the format of Google's BERT/ALBERT releases and of every
/// bert4keras-era model. Optimiser slots (<c>adam_m</c>, <c>adam_v</c>, <c>global_step</c>…) are
/// listed with <see cref="TensorState.Slot"/> so model loading can skip them.
/// </summary>
public sealed partial class TensorFlowCheckpoint : Checkpoint
{
    readonly string path;
    readonly ByteSource index;
    readonly bool ownsSources;
    readonly Dictionary<int, ByteSource?> shards = [];
    readonly List<TensorEntry> entries = [];
    readonly Dictionary<string, string> metadata = [];
    readonly List<string> notes = [];

    /// <summary>True for optimiser slots and counters that a model never loads.</summary>
    public static bool IsOptimizerSlot(string name)
    {
        string last = name[(name.LastIndexOf('/') + 1)..];
        return last is "adam_m" or "adam_v" or "Adam" or "Adam_1" or "Momentum" or "global_step"
            or "beta1_power" or "beta2_power" or "good_steps" or "loss_scale" or "iterations";
    }

    TensorFlowCheckpoint(string path, ByteSource index, Func<int, int, (ByteSource? Source, string Name)> openShard, bool ownsSources)
    {
        this.path = path;
        this.index = index;
        this.ownsSources = ownsSources;
        string file = index.Name;
        var records = SsTable.ReadAll(index);
        int numShards = 1;
        var pending = new List<(string Name, TensorDType DType, long[] Shape, int Shard, long Offset, long Size, uint? Crc)>();
        foreach (var (keyBytes, value) in records)
        {
            string key = Encoding.UTF8.GetString(keyBytes);
            if (key.Length == 0)
            {
                numShards = ParseHeader(file, value);
                continue;
            }
            pending.Add(ParseEntry(file, key, value));
        }
        string[] shardNames = new string[numShards];
        for (int i = 0; i < numShards; i++)
        {
            var (src, name) = openShard(i, numShards);
            shards[i] = src;
            shardNames[i] = name;
            if (src is null) notes.Add($"data shard {name} is absent: its tensors are listed but cannot be read");
        }
        foreach (var e in pending)
        {
            if (e.Shard < 0 || e.Shard >= numShards)
                throw new CheckpointFormatException(file, e.Name, $"shard {e.Shard} out of range (the header says {numShards})");
            bool slot = IsOptimizerSlot(e.Name);
            var src = shards[e.Shard];
            TensorState state = slot ? TensorState.Slot : TensorState.Ok;
            TensorLocator loc;
            string? note = null;
            if (src is null)
            {
                if (!slot) state = TensorState.Missing;
                note = $"data shard {shardNames[e.Shard]} is absent";
                loc = new UnavailableLocator(file, note);
            }
            else if (e.Offset < 0 || e.Offset > src.Length || e.Size > src.Length - e.Offset)
            {
                if (!slot) state = TensorState.Truncated;
                note = $"needs bytes [{e.Offset}, {e.Offset + e.Size}) of {src.Name}, which has {src.Length}";
                loc = new UnavailableLocator(src.Name, "the data shard is truncated: " + note);
            }
            else if (e.DType == TensorDType.String)
            {
                note = "string tensor";
                loc = new UnavailableLocator(file, "string tensors are listed but not read");
            }
            else
            {
                loc = new ContiguousLocator(src, e.Offset, e.Crc);
            }
            entries.Add(new TensorEntry(e.Name, e.DType, e.Shape, state, loc, note));
        }
    }

    int ParseHeader(string file, byte[] value)
    {
        var r = new ProtoReader(value, m => new CheckpointFormatException(file, "bundle header", m));
        int numShards = 1;
        while (!r.End)
        {
            var (f, w) = r.Tag();
            if (f == 1 && w == 0) numShards = (int)Math.Min(r.Varint(), int.MaxValue);
            else if (f == 2 && w == 0)
            {
                ulong endian = r.Varint();
                metadata["endianness"] = endian == 0 ? "little" : "big";
                if (endian != 0) throw new CheckpointFormatException(file, "bundle header", "big-endian bundles are not supported");
            }
            else if (f == 3 && w == 2)
            {
                var v = new ProtoReader(r.Bytes(), m => new CheckpointFormatException(file, "bundle header", m));
                while (!v.End)
                {
                    var (vf, vw) = v.Tag();
                    if (vf == 1 && vw == 0) metadata["producer"] = v.Varint().ToString(CultureInfo.InvariantCulture);
                    else if (vf == 2 && vw == 0) metadata["min_consumer"] = v.Varint().ToString(CultureInfo.InvariantCulture);
                    else v.Skip(vw);
                }
            }
            else r.Skip(w);
        }
        if (numShards < 1 || numShards > 100_000) throw new CheckpointFormatException(file, "bundle header", $"num_shards {numShards} is out of range");
        metadata["num_shards"] = numShards.ToString(CultureInfo.InvariantCulture);
        return numShards;
    }

    static (string, TensorDType, long[], int, long, long, uint?) ParseEntry(string file, string name, byte[] value)
    {
        Func<string, Exception> err = m => new CheckpointFormatException(file, name, m);
        var r = new ProtoReader(value, err);
        ulong dtypeCode = 0;
        var shape = new List<long>();
        long shard = 0, offset = 0, size = 0;
        uint? crc = null;
        bool sliced = false;
        while (!r.End)
        {
            var (f, w) = r.Tag();
            switch (f, w)
            {
                case (1, 0): dtypeCode = r.Varint(); break;
                case (2, 2):
                {
                    var s = new ProtoReader(r.Bytes(), err);
                    while (!s.End)
                    {
                        var (sf, sw) = s.Tag();
                        if (sf == 2 && sw == 2)
                        {
                            var d = new ProtoReader(s.Bytes(), err);
                            long dim = 0;
                            while (!d.End)
                            {
                                var (df, dw) = d.Tag();
                                if (df == 1 && dw == 0) dim = (long)d.Varint();
                                else d.Skip(dw);
                            }
                            if (dim < 0) throw err($"negative dimension {dim}");
                            if (shape.Count >= 64) throw err("more than 64 dimensions");
                            shape.Add(dim);
                        }
                        else if (sf == 3 && sw == 0 && s.Varint() != 0) throw err("tensor of unknown rank");
                        else if (!(sf == 3 && sw == 0)) s.Skip(sw);
                    }
                    break;
                }
                case (3, 0): shard = (long)r.Varint(); break;
                case (4, 0): offset = (long)r.Varint(); break;
                case (5, 0): size = (long)r.Varint(); break;
                case (6, 5): crc = r.Fixed32(); break;
                case (7, 2): r.Bytes(); sliced = true; break;
                default: r.Skip(w); break;
            }
        }
        if (sliced) throw err("partitioned (sliced) variables are not supported; re-save the checkpoint unpartitioned");
        TensorDType dtype = dtypeCode switch
        {
            1 => TensorDType.F32, 2 => TensorDType.F64, 3 => TensorDType.I32, 4 => TensorDType.U8,
            5 => TensorDType.I16, 6 => TensorDType.I8, 7 => TensorDType.String, 9 => TensorDType.I64,
            10 => TensorDType.Bool, 14 => TensorDType.BF16, 19 => TensorDType.F16,
            _ => throw err($"TensorFlow dtype {dtypeCode} is not supported"),
        };
        long[] dims = [.. shape];
        if (dtype != TensorDType.String)
        {
            long expected;
            try { expected = checked(ShapeMath.ElementCount(dims) * dtype.ElementSize()); }
            catch (OverflowException) { throw err("shape too large"); }
            if (expected != size) throw err($"{dtype.DisplayName()} {string.Join("x", dims)} needs {expected} bytes but the entry says {size}");
        }
        if (shard < 0 || shard > int.MaxValue || offset < 0 || size < 0) throw err("negative shard, offset or size");
        return (name, dtype, dims, (int)shard, offset, size, crc);
    }

    /// <summary>
    /// Resolves what the user pointed at (a directory, the <c>checkpoint</c> text file, the
    /// <c>.index</c>, a <c>.data-*</c> shard, or the prefix) to the bundle prefix. Only the file name
    /// of <c>model_checkpoint_path</c> is used: upstream files carry absolute paths from other machines.
    /// </summary>
    /// <returns>The prefix, or null if <paramref name="path"/> is not a TensorFlow checkpoint.</returns>
    public static string? ResolvePrefix(string path)
    {
        if (Directory.Exists(path))
        {
            string ck = System.IO.Path.Combine(path, "checkpoint");
            if (File.Exists(ck)) return ResolvePrefix(ck);
            var idx = Directory.GetFiles(path, "*.index").Order(StringComparer.Ordinal).FirstOrDefault();
            return idx is null ? null : idx[..^".index".Length];
        }
        if (System.IO.Path.GetFileName(path) == "checkpoint" && File.Exists(path))
        {
            string? dir = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path));
            foreach (string line in File.ReadLines(path))
            {
                var m = CheckpointLine().Match(line);
                if (!m.Success) continue;
                string name = m.Groups[1].Value.Replace('\\', '/');
                name = name[(name.LastIndexOf('/') + 1)..];
                return System.IO.Path.Combine(dir ?? ".", name);
            }
            throw new CheckpointFormatException(path, null, "no model_checkpoint_path line in the 'checkpoint' file");
        }
        if (path.EndsWith(".index", StringComparison.Ordinal) && File.Exists(path)) return path[..^".index".Length];
        var data = DataShardName().Match(path);
        if (data.Success) return path[..data.Index];
        if (File.Exists(path + ".index")) return path;
        return null;
    }

    [GeneratedRegex("^\\s*model_checkpoint_path:\\s*\"(.*)\"\\s*$")]
    private static partial Regex CheckpointLine();

    [GeneratedRegex("\\.data-\\d{5}-of-\\d{5}$")]
    private static partial Regex DataShardName();

    /// <summary>Opens a bundle by prefix (see <see cref="ResolvePrefix"/> for what else is accepted).</summary>
    /// <exception cref="FileNotFoundException">No <c>.index</c> for the prefix.</exception>
    public static TensorFlowCheckpoint OpenPrefix(string pathOrPrefix)
    {
        string prefix = ResolvePrefix(pathOrPrefix) ?? pathOrPrefix;
        string indexPath = prefix + ".index";
        if (!File.Exists(indexPath)) throw new FileNotFoundException($"{indexPath}: TensorFlow checkpoint index not found", indexPath);
        var index = ByteSource.OpenFile(indexPath);
        try
        {
            return new TensorFlowCheckpoint(prefix, index, (i, n) =>
            {
                string shard = $"{prefix}.data-{i:D5}-of-{n:D5}";
                return (File.Exists(shard) ? ByteSource.OpenFile(shard) : null, System.IO.Path.GetFileName(shard));
            }, ownsSources: true);
        }
        catch
        {
            index.Dispose();
            throw;
        }
    }

    /// <summary>Opens a bundle held in memory: the index bytes and the data shards, in order.</summary>
    public static TensorFlowCheckpoint Open(ReadOnlyMemory<byte> indexBytes, IReadOnlyList<ReadOnlyMemory<byte>> dataShards, string name)
    {
        var index = ByteSource.FromMemory(indexBytes, name + ".index");
        return new TensorFlowCheckpoint(name, index, (i, n) =>
        {
            string shard = $"{name}.data-{i:D5}-of-{n:D5}";
            return (i < dataShards.Count ? ByteSource.FromMemory(dataShards[i], shard) : null, shard);
        }, ownsSources: true);
    }

    /// <inheritdoc/>
    public override string Path => path;
    /// <inheritdoc/>
    public override CheckpointFormat Format => CheckpointFormat.TensorFlowBundle;
    /// <inheritdoc/>
    public override IReadOnlyList<TensorEntry> Entries => entries;
    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, string> Metadata => metadata;
    /// <inheritdoc/>
    public override IReadOnlyList<string> Notes => notes;

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        if (!disposing || !ownsSources) return;
        index.Dispose();
        foreach (var s in shards.Values) s?.Dispose();
    }
}
