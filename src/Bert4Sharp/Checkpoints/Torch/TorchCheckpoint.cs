namespace Bert4Sharp.Checkpoints.Torch;

using System.Buffers.Binary;
using System.Globalization;
using System.Numerics;

/// <summary>
/// Reader for files written by PyTorch's <c>torch.save</c>: the zip format (<c>data.pkl</c> plus one
/// member per storage under <c>data/</c>) and the legacy format (a magic-number pickle, a protocol
/// pickle, a sys_info pickle, the state-dict pickle, the list of storage keys, then every storage as
/// an 8-byte element count followed by its raw bytes). Pickles go through a restricted unpickler.
/// </summary>
public sealed class TorchCheckpoint : Checkpoint
{
    /// <summary>The magic number that opens a legacy file (pickled as a 10-byte LONG1).</summary>
    static readonly BigInteger LegacyMagic = BigInteger.Parse("1950a86a20f9469cfc6c", NumberStyles.HexNumber);

    readonly ByteSource source;
    readonly bool ownsSource;
    readonly List<TensorEntry> entries = [];
    readonly Dictionary<string, string> metadata = [];
    readonly List<string> notes = [];

    TorchCheckpoint(ByteSource source, bool ownsSource, CheckpointFormat format)
    {
        this.source = source;
        this.ownsSource = ownsSource;
        Format = format;
    }

    /// <inheritdoc/>
    public override string Path => source.Name;
    /// <inheritdoc/>
    public override CheckpointFormat Format { get; }
    /// <inheritdoc/>
    public override IReadOnlyList<TensorEntry> Entries => entries;
    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, string> Metadata => metadata;
    /// <inheritdoc/>
    public override IReadOnlyList<string> Notes => notes;

    internal static bool LooksLikeLegacy(ReadOnlySpan<byte> head) =>
        head.Length >= 14 && head[0] == 0x80 && head[1] == 0x02 && head[2] == 0x8a && head[3] == 10;

    internal static TorchCheckpoint OpenZip(ByteSource source, bool ownsSource)
    {
        var ckpt = new TorchCheckpoint(source, ownsSource, CheckpointFormat.TorchZip);
        ckpt.LoadZip();
        return ckpt;
    }

    internal static TorchCheckpoint OpenLegacy(ByteSource source, bool ownsSource)
    {
        var ckpt = new TorchCheckpoint(source, ownsSource, CheckpointFormat.TorchLegacy);
        ckpt.LoadLegacy();
        return ckpt;
    }

    void LoadZip()
    {
        string file = source.Name;
        var zip = new ZipDirectory(source);
        var pkl = zip.Members.FirstOrDefault(m => m.Name == "data.pkl" || m.Name.EndsWith("/data.pkl", StringComparison.Ordinal))
            ?? throw new CheckpointFormatException(file, null, "zip archive has no data.pkl: not a torch.save file");
        string prefix = pkl.Name[..^"data.pkl".Length];
        var byName = new Dictionary<string, ZipDirectory.Member>(StringComparer.Ordinal);
        foreach (var m in zip.Members) byName.TryAdd(m.Name, m);
        if (byName.TryGetValue(prefix + "byteorder", out var bo))
        {
            string order = System.Text.Encoding.ASCII.GetString(zip.ReadAll(bo)).Trim();
            metadata["byteorder"] = order;
            if (order != "little") throw new CheckpointFormatException(file, bo.Name, $"byte order '{order}' is not supported (only little-endian)");
        }
        if (byName.TryGetValue(prefix + "version", out var ver) && ver.Size < 64)
            metadata["version"] = System.Text.Encoding.ASCII.GetString(zip.ReadAll(ver)).Trim();

        byte[] pickle = zip.ReadAll(pkl);
        var (root, _) = RestrictedUnpickler.Load(pickle, 0, file, pkl.Name, pid => StorageFromPid(pid, pkl.Name, legacy: false));
        var tensors = Flatten(root, pkl.Name);
        var firstUser = new Dictionary<string, string>();
        foreach (var (name, t) in tensors)
        {
            var s = t.Storage;
            string? note = SharedNote(firstUser, s.Key, name);
            int es = s.DType.ElementSize();
            if (!byName.TryGetValue(prefix + "data/" + s.Key, out var member))
            {
                Add(name, t, TensorState.Missing, new UnavailableLocator(file, $"storage member data/{s.Key} is missing from the archive"), "storage missing");
                continue;
            }
            long start = zip.DataOffset(member);
            long storageBytes = checked(s.ElementCount * es);
            if (member.Size < storageBytes)
                throw new CheckpointFormatException(file, member.Name, $"storage holds {member.Size} bytes but the pickle says {s.ElementCount} × {es}");
            AddView(name, t, start, storageBytes, note);
        }
    }

    void LoadLegacy()
    {
        string file = source.Name;
        // The pickles sit at the start of the file; read a window and grow it if a pickle runs past it.
        long window = Math.Min(source.Length, 1 << 20);
        while (true)
        {
            byte[] head = source.ReadArray(0, window);
            try
            {
                ParseLegacy(head, partial: window < source.Length);
                return;
            }
            catch (RestrictedUnpickler.NeedMoreData)
            {
                entries.Clear();
                metadata.Clear();
                notes.Clear();
                long next = Math.Min(Math.Min(source.Length, window * 4), Array.MaxLength);
                if (next == window) throw new CheckpointFormatException(source.Name, null, "the pickled header does not end within the file");
                window = next;
            }
        }
    }

    void ParseLegacy(byte[] head, bool partial)
    {
        string file = source.Name;
        var (magic, p) = RestrictedUnpickler.Load(head, 0, file, "magic number", null, partial);
        if (!(magic is BigInteger big && big == LegacyMagic))
            throw new CheckpointFormatException(file, "magic number", "not a legacy torch.save file (wrong magic number)");
        var (protocol, p2) = RestrictedUnpickler.Load(head, p, file, "protocol version", null, partial);
        if (protocol is not long pv || pv != 1001)
            throw new CheckpointFormatException(file, "protocol version", $"protocol version {protocol} is not supported (expected 1001)");
        var (sysInfo, p3) = RestrictedUnpickler.Load(head, p2, file, "sys_info", null, partial);
        if (sysInfo is not PickleDict info) throw new CheckpointFormatException(file, "sys_info", "sys_info is not a dict");
        foreach (var (k, v) in info.Items)
        {
            if (k is not string key) continue;
            if (v is PickleDict sizes)
                foreach (var (sk, sv) in sizes.Items) metadata[$"{key}.{sk}"] = Convert.ToString(sv, CultureInfo.InvariantCulture) ?? "";
            else metadata[key] = Convert.ToString(v, CultureInfo.InvariantCulture) ?? "";
        }
        if (metadata.TryGetValue("little_endian", out var le) && le != "True")
            throw new CheckpointFormatException(file, "sys_info", "the file was written on a big-endian machine; not supported");

        var storages = new Dictionary<string, StorageRef>(StringComparer.Ordinal);
        var (root, p4) = RestrictedUnpickler.Load(head, p3, file, "state dict", pid =>
        {
            var s = StorageFromPid(pid, "state dict", legacy: true);
            storages.TryAdd(s.Key, s);
            return s;
        }, partial);
        var (keysObj, p5) = RestrictedUnpickler.Load(head, p4, file, "storage keys", null, partial);
        if (keysObj is not List<object?> keyList || keyList.Any(k => k is not string))
            throw new CheckpointFormatException(file, "storage keys", "expected a list of storage keys");
        metadata["pickle_end_offset"] = p5.ToString(CultureInfo.InvariantCulture);

        // Walk the appended storages in key order: each is an int64 element count, then the raw bytes.
        var placed = new Dictionary<string, (long Start, long Available)>(StringComparer.Ordinal);
        long pos = p5, len = source.Length;
        int complete = 0;
        Span<byte> count = stackalloc byte[8];
        foreach (string key in keyList.Cast<string>())
        {
            if (!storages.TryGetValue(key, out var s))
                throw new CheckpointFormatException(file, "storage keys", $"storage key '{key}' is not used by any tensor");
            long bytes = checked(s.ElementCount * s.DType.ElementSize());
            if (pos + 8 > len)
            {
                placed[key] = (pos + 8, 0);
                pos = long.MaxValue / 4;
                continue;
            }
            source.Read(pos, count, key);
            long numel = BinaryPrimitives.ReadInt64LittleEndian(count);
            if (numel != s.ElementCount)
                throw new CheckpointFormatException(file, key, $"storage header says {numel} elements, the pickle says {s.ElementCount}");
            long start = pos + 8;
            long available = Math.Clamp(len - start, 0, bytes);
            placed[key] = (start, available);
            if (available == bytes) complete++;
            pos = start + bytes;
        }
        metadata["storages"] = keyList.Count.ToString(CultureInfo.InvariantCulture);
        metadata["storages_complete"] = complete.ToString(CultureInfo.InvariantCulture);
        if (complete < keyList.Count)
            notes.Add($"file is truncated: {source.Length} bytes, {complete} of {keyList.Count} storages complete; tensors in the others are listed but cannot be read");

        var firstUser = new Dictionary<string, string>();
        foreach (var (name, t) in Flatten(root, "state dict"))
        {
            string? note = SharedNote(firstUser, t.Storage.Key, name);
            if (!placed.TryGetValue(t.Storage.Key, out var where))
                throw new CheckpointFormatException(file, name, $"storage '{t.Storage.Key}' is missing from the key list");
            long viewBytes = t.Storage.ViewOffset * t.Storage.DType.ElementSize();
            AddView(name, t, where.Start + viewBytes, where.Available - viewBytes, note);
        }
    }

    static string? SharedNote(Dictionary<string, string> firstUser, string key, string name)
    {
        if (firstUser.TryGetValue(key, out var first)) return $"shares storage with {first}";
        firstUser[key] = name;
        return null;
    }

    void AddView(string name, TensorRef t, long storageStart, long storageAvailable, string? note)
    {
        var s = t.Storage;
        int es = s.DType.ElementSize();
        long viewElements = s.ElementCount - s.ViewOffset;
        long count;
        try { count = ShapeMath.ElementCount(t.Shape); }
        catch (OverflowException) { throw new CheckpointFormatException(source.Name, name, "shape is too large"); }
        // Views with zero strides (expand) may legitimately exceed their storage, but not by orders of
        // magnitude more than the file could justify: refuse rather than allocate gigabytes.
        if (count > 16 * source.Length + (1 << 20))
            throw new CheckpointFormatException(source.Name, name, $"a view of {count} elements over a file of {source.Length} bytes is not plausible");
        if (count > 0)
        {
            long lo, hi;
            try { (lo, hi) = ShapeMath.Span(t.Shape, t.Stride, t.StorageOffset); }
            catch (OverflowException) { throw new CheckpointFormatException(source.Name, name, "strides overflow"); }
            if (lo < 0 || hi >= viewElements)
                throw new CheckpointFormatException(source.Name, name, $"tensor reaches storage elements {lo}..{hi} but the storage has {viewElements}");
            if ((hi + 1) * es > storageAvailable)
            {
                string why = $"the file is truncated: this tensor's storage needs {(hi + 1) * es} bytes from offset {storageStart}, {Math.Max(0, storageAvailable)} are present";
                Add(name, t, TensorState.Truncated, new UnavailableLocator(source.Name, why), note is null ? "truncated" : note + "; truncated");
                return;
            }
        }
        Add(name, t, TensorState.Ok, new StridedLocator(source, storageStart, storageAvailable, viewElements, es, t.StorageOffset, t.Shape, t.Stride), note);
    }

    void Add(string name, TensorRef t, TensorState state, TensorLocator locator, string? note) =>
        entries.Add(new TensorEntry(name, t.Storage.DType, t.Shape, state, locator, note));

    StorageRef StorageFromPid(object?[] pid, string entry, bool legacy)
    {
        string file = source.Name;
        if (pid.Length < 5 || pid[0] is not "storage")
            throw new CheckpointFormatException(file, entry, "persistent id is not a ('storage', …) tuple");
        if (pid[1] is not PickleGlobal g || RestrictedUnpickler.StorageDType(g) is not TensorDType dtype)
            throw new CheckpointFormatException(file, entry, $"persistent id names an unknown storage type {pid[1]}");
        string key = pid[2] as string ?? throw new CheckpointFormatException(file, entry, "storage key is not a string");
        string location = pid[3] as string ?? "cpu";
        if (pid[4] is not long numel || numel < 0) throw new CheckpointFormatException(file, entry, $"storage '{key}' has a bad size");
        if (numel > source.Length) throw new CheckpointFormatException(file, entry, $"storage '{key}' claims {numel} elements, more than the file could hold");
        long viewOffset = 0;
        if (legacy && pid.Length >= 6 && pid[5] is object?[] view)
        {
            // (view_key, offset, view_size): an old-style storage view into the root storage.
            if (view.Length != 3 || view[1] is not long off || view[2] is not long size || off < 0 || size < 0 || off + size > numel)
                throw new CheckpointFormatException(file, entry, $"storage view of '{key}' is malformed");
            viewOffset = off;
            numel = off + size;
        }
        return new StorageRef(dtype, key, location, numel, viewOffset);
    }

    List<(string Name, TensorRef Tensor)> Flatten(object? root, string entry)
    {
        if (root is not PickleDict)
            throw new CheckpointFormatException(source.Name, entry, $"the pickle holds a {Describe(root)}, not a state dict");
        var result = new List<(string, TensorRef)>();
        void Walk(object? o, string prefix, int depth)
        {
            if (depth > 16) throw new CheckpointFormatException(source.Name, entry, "state dict nests deeper than 16 levels");
            switch (o)
            {
                case TensorRef t:
                    result.Add((prefix, t));
                    break;
                case PickleDict d:
                    foreach (var (k, v) in d.Items)
                    {
                        string key = Convert.ToString(k, CultureInfo.InvariantCulture) ?? "None";
                        Walk(v, prefix.Length == 0 ? key : prefix + "." + key, depth + 1);
                    }
                    break;
                case List<object?> list:
                    for (int i = 0; i < list.Count; i++) Walk(list[i], prefix + "." + i, depth + 1);
                    break;
                case object?[] tuple:
                    for (int i = 0; i < tuple.Length; i++) Walk(tuple[i], prefix + "." + i, depth + 1);
                    break;
                case null or string or long or double or bool or BigInteger:
                    if (prefix.Length > 0 && metadata.Count < 1000) metadata[prefix] = Convert.ToString(o, CultureInfo.InvariantCulture) ?? "None";
                    break;
                default:
                    break;
            }
        }
        Walk(root, "", 0);
        var dup = result.GroupBy(r => r.Item1).FirstOrDefault(g => g.Count() > 1);
        if (dup is not null) throw new CheckpointFormatException(source.Name, dup.Key, "the same tensor name appears twice");
        return result;
    }

    static string Describe(object? o) => o switch
    {
        null => "None",
        TensorRef => "single tensor",
        _ => o.GetType().Name,
    };

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        if (disposing && ownsSource) source.Dispose();
    }
}
