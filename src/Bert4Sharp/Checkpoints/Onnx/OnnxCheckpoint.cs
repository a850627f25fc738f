namespace Bert4Sharp.Checkpoints.Onnx;

using System.Globalization;

/// <summary>
/// Reader for ONNX models (<c>.onnx</c>): the graph's initializers are the checkpoint's tensors. The
/// protobuf is walked in place: <c>raw_data</c> and packed <c>float_data</c>/<c>double_data</c> are located
/// by their offset in the file and read like any other checkpoint's bytes; other typed fields
/// (<c>int64_data</c>, <c>int32_data</c> holding int8…bfloat16) are decoded when read; external data
/// (<c>data_location = EXTERNAL</c>) is read from the named file beside the model. Linear weights that
/// the exporter stored anonymously as [in, out] MatMul operands are exposed as <c>X.weight</c> [out, in]
/// (see <see cref="OnnxWeightNames"/>); <see cref="Initializers"/> keeps every tensor as stored.
/// </summary>
public sealed class OnnxCheckpoint : Checkpoint
{
    readonly ByteSource source;
    readonly bool ownsSource;
    readonly bool memoryMap;
    readonly string baseDirectory;
    readonly List<TensorEntry> entries = [];
    readonly List<TensorEntry> initializers = [];
    readonly Dictionary<string, string> metadata = [];
    readonly Dictionary<string, string> recovered = new(StringComparer.Ordinal);
    readonly List<string> notes = [];
    readonly List<string> graphInputs = [];
    readonly List<string> graphOutputs = [];
    readonly Dictionary<string, ByteSource?> externalFiles = new(StringComparer.Ordinal);

    OnnxCheckpoint(ByteSource source, bool ownsSource, bool memoryMap)
    {
        this.source = source;
        this.ownsSource = ownsSource;
        this.memoryMap = memoryMap;
        baseDirectory = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(source.Name)) ?? ".";
    }

    /// <summary>Opens an ONNX model file (external data files are looked for beside it).</summary>
    /// <exception cref="FileNotFoundException">No such file.</exception>
    /// <exception cref="CheckpointException">The file is not a readable ONNX model.</exception>
    public static OnnxCheckpoint OpenFile(string path, bool memoryMap = false)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: no such file", path);
        var source = memoryMap ? ByteSource.MapFile(path) : ByteSource.OpenFile(path);
        try { return Open(source, ownsSource: true, memoryMap); }
        catch { source.Dispose(); throw; }
    }

    /// <summary>Reads the model's structure. On failure the external data files are closed; <paramref name="source"/> is the caller's to dispose.</summary>
    internal static OnnxCheckpoint Open(ByteSource source, bool ownsSource, bool memoryMap)
    {
        var ck = new OnnxCheckpoint(source, ownsSource, memoryMap);
        try { ck.Load(); }
        catch { ck.CloseExternalFiles(); throw; }
        return ck;
    }

    void CloseExternalFiles()
    {
        foreach (var s in externalFiles.Values) s?.Dispose();
        externalFiles.Clear();
    }

    /// <summary>True when the first bytes look like a serialized ModelProto (field 1 <c>ir_version</c>, then another known field).</summary>
    internal static bool LooksLikeModel(ReadOnlySpan<byte> head) =>
        head.Length >= 3 && head[0] == 0x08 && head[1] is >= 1 and <= 20 && head[2] is 0x12 or 0x1a or 0x22 or 0x28 or 0x32 or 0x3a or 0x42;

    /// <inheritdoc/>
    public override string Path => source.Name;
    /// <inheritdoc/>
    public override CheckpointFormat Format => CheckpointFormat.Onnx;
    /// <summary>Every initializer, in file order; recovered Linear weights under their <c>X.weight</c> name and [out, in] shape.</summary>
    public override IReadOnlyList<TensorEntry> Entries => entries;
    /// <summary><c>ir_version</c>, producer, opsets, graph name, inputs, outputs, and the model's <c>metadata_props</c>.</summary>
    public override IReadOnlyDictionary<string, string> Metadata => metadata;
    /// <inheritdoc/>
    public override IReadOnlyList<string> Notes => notes;

    /// <summary>Every initializer exactly as stored: original names, MatMul weights in their [in, out] layout.</summary>
    public IReadOnlyList<TensorEntry> Initializers => initializers;

    /// <summary>Recovered name (<c>X.weight</c>) → the anonymous initializer name it was stored under.</summary>
    public IReadOnlyDictionary<string, string> RecoveredNames => recovered;

    /// <summary>The <see cref="TensorEntry.Note"/> of an initializer that keeps an exporter-made name.</summary>
    public const string AnonymousNote = "anonymous: an exporter-made name that no MatMul + Add bias pair explains (often a shape constant)";

    /// <summary>
    /// True for names an exporter made up rather than took from the model: <c>onnx::…</c> or all digits.
    /// Such entries that remain in <see cref="Checkpoint.Entries"/> are graph constants or weights the
    /// MatMul + Add rule could not name.
    /// </summary>
    public static bool IsAnonymousName(string name) => OnnxWeightNames.IsAnonymous(name);

    /// <summary>The graph's inputs that are not initializers (what a runtime feeds), in order.</summary>
    public IReadOnlyList<string> GraphInputs => graphInputs;

    /// <summary>The graph's outputs, in order.</summary>
    public IReadOnlyList<string> GraphOutputs => graphOutputs;

    void Load()
    {
        var model = ProtoStream.Over(source, "ModelProto");
        var opsets = new List<string>();
        var props = new List<(string, string)>();
        var graph = new GraphParts();
        bool sawGraph = false;
        while (!model.End)
        {
            var (f, w) = model.Tag();
            switch (f, w)
            {
                case (1, 0): metadata["ir_version"] = model.Varint().ToString(CultureInfo.InvariantCulture); break;
                case (2, 2): metadata["producer_name"] = model.String(); break;
                case (3, 2): metadata["producer_version"] = model.String(); break;
                case (4, 2): metadata["domain"] = model.String(); break;
                case (5, 0): metadata["model_version"] = model.Varint().ToString(CultureInfo.InvariantCulture); break;
                case (7, 2): ReadGraph(model.Message("graph"), graph); sawGraph = true; break;
                case (8, 2):
                {
                    var o = model.Message("opset_import");
                    string domain = "";
                    ulong version = 0;
                    while (!o.End)
                    {
                        var (of, ow) = o.Tag();
                        if (of == 1 && ow == 2) domain = o.String();
                        else if (of == 2 && ow == 0) version = o.Varint();
                        else o.Skip(ow);
                    }
                    opsets.Add($"{(domain.Length == 0 ? "ai.onnx" : domain)} {version}");
                    break;
                }
                case (14, 2): props.Add(ReadStringPair(model.Message("metadata_props"))); break;
                default: model.Skip(w); break;
            }
        }
        if (!sawGraph) throw new CheckpointFormatException(source.Name, null, "no graph: not an ONNX ModelProto (or an empty one)");
        if (opsets.Count > 0) metadata["opset_import"] = string.Join(", ", opsets);
        if (graph.Name is not null) metadata["graph_name"] = graph.Name;
        var initNames = new HashSet<string>(graph.Tensors.Select(t => t.Name), StringComparer.Ordinal);
        graphInputs.AddRange(graph.Inputs.Where(i => !initNames.Contains(i)));
        graphOutputs.AddRange(graph.Outputs);
        metadata["inputs"] = string.Join(", ", graphInputs);
        metadata["outputs"] = string.Join(", ", graphOutputs);
        foreach (var (k, v) in props) metadata.TryAdd(k, v);
        BuildEntries(graph);
        if (graph.ConstantNodes > 0)
            notes.Add($"{graph.ConstantNodes} Constant nodes hold graph constants (shape values, scalars) and are not listed");
        if (graph.SparseInitializers > 0)
            notes.Add($"{graph.SparseInitializers} sparse initializers are not supported and not listed");
        foreach (var (file, src) in externalFiles)
            if (src is null) notes.Add($"external data file {file} is absent: its tensors are listed but cannot be read");
    }

    static (string, string) ReadStringPair(ProtoStream p)
    {
        string key = "", value = "";
        while (!p.End)
        {
            var (f, w) = p.Tag();
            if (f == 1 && w == 2) key = p.String();
            else if (f == 2 && w == 2) value = p.String();
            else p.Skip(w);
        }
        return (key, value);
    }

    sealed class GraphParts
    {
        public string? Name;
        public readonly List<StoredTensor> Tensors = [];
        public readonly List<OnnxNode> Nodes = [];
        public readonly List<string> Inputs = [];
        public readonly List<string> Outputs = [];
        public int ConstantNodes, SparseInitializers;
    }

    void ReadGraph(ProtoStream g, GraphParts parts)
    {
        while (!g.End)
        {
            var (f, w) = g.Tag();
            switch (f, w)
            {
                case (1, 2):
                {
                    var node = ReadNode(g.Message($"graph.node[{parts.Nodes.Count}]"));
                    if (node.OpType == "Constant") parts.ConstantNodes++;
                    parts.Nodes.Add(node);
                    break;
                }
                case (2, 2): parts.Name = g.String(); break;
                case (5, 2):
                {
                    var t = ReadTensor(g.Message($"graph.initializer[{parts.Tensors.Count}]"));
                    parts.Tensors.Add(t);
                    break;
                }
                case (11, 2): parts.Inputs.Add(ReadValueInfoName(g.Message("graph.input"))); break;
                case (12, 2): parts.Outputs.Add(ReadValueInfoName(g.Message("graph.output"))); break;
                case (15, 2): g.Skip(w); parts.SparseInitializers++; break;
                default: g.Skip(w); break;
            }
        }
    }

    static string ReadValueInfoName(ProtoStream v)
    {
        string name = "";
        while (!v.End)
        {
            var (f, w) = v.Tag();
            if (f == 1 && w == 2) name = v.String();
            else v.Skip(w);
        }
        return name;
    }

    static OnnxNode ReadNode(ProtoStream n)
    {
        var inputs = new List<string>();
        var outputs = new List<string>();
        string op = "";
        while (!n.End)
        {
            var (f, w) = n.Tag();
            if (f == 1 && w == 2) inputs.Add(n.String());
            else if (f == 2 && w == 2) outputs.Add(n.String());
            else if (f == 4 && w == 2) op = n.String();
            else n.Skip(w);   // name, attributes (Constant values, subgraphs), domain, doc_string
        }
        return new OnnxNode(op, [.. inputs], [.. outputs]);
    }

    /// <summary>One TensorProto as found in the file: where its parts are, nothing read yet.</summary>
    sealed class StoredTensor
    {
        public string Name = "";
        public string What = "";
        public long DataType;
        public readonly List<long> Dims = [];
        public long Start, End;
        public (long Offset, long Length)? Raw;
        public readonly Dictionary<int, long> TypedCounts = [];
        public readonly Dictionary<int, int> TypedRuns = [];
        public readonly Dictionary<int, (long Offset, long Length)> FirstPackedRun = [];
        public bool External;
        public string? Location;
        public string? ExternalOffset, ExternalLength;
        public bool Segmented;
    }

    static StoredTensor ReadTensor(ProtoStream t)
    {
        var s = new StoredTensor { Start = t.Position, What = t.What ?? "initializer" };
        void Count(int field, long n, (long, long)? packedRun)
        {
            s.TypedCounts[field] = s.TypedCounts.GetValueOrDefault(field) + n;
            s.TypedRuns[field] = s.TypedRuns.GetValueOrDefault(field) + 1;
            if (packedRun is { } r) s.FirstPackedRun.TryAdd(field, r);
        }
        while (!t.End)
        {
            var (f, w) = t.Tag();
            switch (f, w)
            {
                case (1, 0): AddDim(t, s, (long)t.Varint()); break;
                case (1, 2):
                {
                    var (off, len) = t.Bytes();
                    var p = t.Range(off, len);
                    while (!p.End) AddDim(t, s, (long)p.Varint());
                    break;
                }
                case (2, 0): s.DataType = (long)Math.Min(t.Varint(), int.MaxValue); break;
                case (3, 2): t.Skip(w); s.Segmented = true; break;
                case (8, 2): s.Name = t.String(); t.What = s.What = s.Name; break;
                case (9, 2): s.Raw = t.Bytes(); break;
                case (13, 2):
                {
                    var (k, v) = ReadStringPair(t.Message(s.Name));
                    if (k == "location") s.Location = v;
                    else if (k == "offset") s.ExternalOffset = v;
                    else if (k == "length") s.ExternalLength = v;
                    break;
                }
                case (14, 0): s.External = t.Varint() == 1; break;
                case (OnnxDataTypes.FloatData, 2):
                {
                    var run = t.Bytes();
                    if (run.Length % 4 != 0) throw t.Error($"packed float_data of {run.Length} bytes is not a whole number of floats");
                    Count(f, run.Length / 4, run);
                    break;
                }
                case (OnnxDataTypes.DoubleData, 2):
                {
                    var run = t.Bytes();
                    if (run.Length % 8 != 0) throw t.Error($"packed double_data of {run.Length} bytes is not a whole number of doubles");
                    Count(f, run.Length / 8, run);
                    break;
                }
                case (OnnxDataTypes.Int32Data or OnnxDataTypes.Int64Data or OnnxDataTypes.UInt64Data, 2):
                {
                    var run = t.Bytes();
                    Count(f, t.CountVarints(run.Offset, run.Length), null);
                    break;
                }
                case (OnnxDataTypes.FloatData, 5) or (OnnxDataTypes.DoubleData, 1)
                    or (OnnxDataTypes.Int32Data or OnnxDataTypes.Int64Data or OnnxDataTypes.UInt64Data, 0):
                    t.Skip(w);
                    Count(f, 1, null);
                    break;
                case (OnnxDataTypes.StringData, 2): t.Skip(w); Count(f, 1, null); break;
                default: t.Skip(w); break;
            }
        }
        s.End = t.Position;
        return s;
    }

    static void AddDim(ProtoStream t, StoredTensor s, long d)
    {
        if (d < 0) throw t.Error($"negative dimension {d}");
        if (s.Dims.Count >= 64) throw t.Error("more than 64 dimensions");
        s.Dims.Add(d);
    }

    CheckpointFormatException Error(StoredTensor t, string message) => new(source.Name, t.What, message);

    void BuildEntries(GraphParts graph)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var stored = new List<(StoredTensor Tensor, TensorEntry Entry, (ByteSource Source, long Offset)? Contiguous)>();
        foreach (var t in graph.Tensors)
        {
            if (t.Name.Length == 0) throw Error(t, "an initializer has no name");
            if (!seen.Add(t.Name)) throw Error(t, "two initializers have this name");
            var (entry, contiguous) = BuildEntry(t);
            stored.Add((t, entry, contiguous));
            initializers.Add(entry);
        }
        var shapes = initializers.ToDictionary(e => e.Name, e => e.Shape, StringComparer.Ordinal);
        var names = OnnxWeightNames.Recover(shapes, graph.Nodes);
        foreach (var (t, e, contiguous) in stored)
        {
            if (!names.TryGetValue(e.Name, out string? name))
            {
                entries.Add(e.Note is null && OnnxWeightNames.IsAnonymous(e.Name)
                    ? new TensorEntry(e.Name, e.DType, [.. e.Shape], e.State, e.Locator, AnonymousNote)
                    : e);
                continue;
            }
            long rows = e.Shape[0], cols = e.Shape[1];   // stored [in, out]
            string note = $"stored as '{e.Name}' [{rows}, {cols}] (MatMul input B); exposed transposed";
            TensorLocator loc = e.Locator switch
            {
                UnavailableLocator u => u,
                _ when contiguous is { } c => new StridedLocator(c.Source, c.Offset, e.ByteCount, e.ElementCount, e.DType.ElementSize(), 0, [cols, rows], [1, cols]),
                _ => new TransposedLocator(e),
            };
            entries.Add(new TensorEntry(name, e.DType, [cols, rows], e.State, loc, e.State == TensorState.Ok ? note : e.Note + "; " + note));
            recovered[name] = e.Name;
        }
        if (recovered.Count > 0)
            notes.Add($"{recovered.Count} anonymous MatMul weights named after the bias of the Add that follows and exposed as [out, in]");
        int anonymous = entries.Count(e => OnnxWeightNames.IsAnonymous(e.Name));
        if (anonymous > 0)
            notes.Add($"{anonymous} initializers keep anonymous names (shape constants, or weights the MatMul + Add rule cannot name)");
    }

    (TensorEntry, (ByteSource, long)?) BuildEntry(StoredTensor t)
    {
        if (t.Segmented) throw Error(t, "segmented tensors (TensorProto.segment) are not supported");
        var dtype = OnnxDataTypes.ToDType(t.DataType)
            ?? throw Error(t, $"data type {OnnxDataTypes.Name(t.DataType)} ({t.DataType}) is not supported (supported: FLOAT, FLOAT16, BFLOAT16, DOUBLE, INT64, INT32, INT16, INT8, UINT8, BOOL, STRING)");
        long[] dims = [.. t.Dims];
        long count, bytes;
        try
        {
            count = ShapeMath.ElementCount(dims);
            bytes = checked(count * dtype.ElementSize());
        }
        catch (OverflowException) { throw Error(t, $"shape [{string.Join(", ", dims)}] is too large"); }
        if (dtype == TensorDType.String)
            return (new TensorEntry(t.Name, dtype, dims, TensorState.Ok, new UnavailableLocator(source.Name, "string tensors are listed but not read"), "string tensor"), null);
        if (t.External) return BuildExternal(t, dtype, dims, bytes);
        if (t.Raw is { } raw)
        {
            if (raw.Length != bytes)
                throw Error(t, $"{OnnxDataTypes.Name(t.DataType)} [{string.Join(", ", dims)}] needs {bytes} bytes but raw_data holds {raw.Length}");
            return (new TensorEntry(t.Name, dtype, dims, TensorState.Ok, new ContiguousLocator(source, raw.Offset)), (source, raw.Offset));
        }
        int field = OnnxDataTypes.FieldFor(dtype);
        foreach (var other in t.TypedCounts.Keys)
            if (other != field)
                throw Error(t, $"a {OnnxDataTypes.Name(t.DataType)} tensor keeps its values in {OnnxDataTypes.FieldName(field)}, but this one has {OnnxDataTypes.FieldName(other)}");
        long stored = t.TypedCounts.GetValueOrDefault(field);
        if (stored != count)
            throw Error(t, count > 0 && stored == 0
                ? $"no data: neither raw_data nor {OnnxDataTypes.FieldName(field)} holds the {count} values of [{string.Join(", ", dims)}]"
                : $"{OnnxDataTypes.FieldName(field)} holds {stored} values but [{string.Join(", ", dims)}] needs {count}");
        if (count == 0)
            return (new TensorEntry(t.Name, dtype, dims, TensorState.Ok, new ContiguousLocator(source, 0)), null);
        // Packed float_data / double_data in one run are the little-endian values themselves.
        if (field is OnnxDataTypes.FloatData or OnnxDataTypes.DoubleData && t.TypedRuns[field] == 1 && t.FirstPackedRun.TryGetValue(field, out var run))
            return (new TensorEntry(t.Name, dtype, dims, TensorState.Ok, new ContiguousLocator(source, run.Offset)), (source, run.Offset));
        return (new TensorEntry(t.Name, dtype, dims, TensorState.Ok, new TypedFieldLocator(source, t.Start, t.End, field, dtype)), null);
    }

    (TensorEntry, (ByteSource, long)?) BuildExternal(StoredTensor t, TensorDType dtype, long[] dims, long bytes)
    {
        string location = t.Location ?? throw Error(t, "data_location is EXTERNAL but external_data has no 'location'");
        static long? Number(string? s) => s is null ? null : long.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out long v) ? v : -1;
        long offset = Number(t.ExternalOffset) ?? 0;
        long length = Number(t.ExternalLength) ?? bytes;
        if (offset < 0 || length < 0) throw Error(t, $"external_data offset '{t.ExternalOffset}' / length '{t.ExternalLength}' must be non-negative integers");
        if (length != bytes) throw Error(t, $"{OnnxDataTypes.Name(t.DataType)} [{string.Join(", ", dims)}] needs {bytes} bytes but external_data length is {length}");
        string rel = location.Replace('\\', '/');
        if (rel.Length == 0 || rel.StartsWith('/') || System.IO.Path.IsPathRooted(rel) || rel.Split('/').Any(p => p == ".."))
            throw Error(t, $"external data location '{location}' must be a relative path inside the model's directory");
        if (!externalFiles.TryGetValue(rel, out var ext))
        {
            string full = System.IO.Path.Combine(baseDirectory, rel);
            ext = File.Exists(full) ? (memoryMap ? ByteSource.MapFile(full) : ByteSource.OpenFile(full)) : null;
            externalFiles[rel] = ext;
        }
        if (ext is null)
        {
            string why = $"external data file {rel} is absent (looked in {baseDirectory})";
            return (new TensorEntry(t.Name, dtype, dims, TensorState.Missing, new UnavailableLocator(source.Name, why), $"external file {rel} absent"), null);
        }
        if (offset > ext.Length || bytes > ext.Length - offset)
        {
            string why = $"needs bytes [{offset}, {offset + bytes}) of {rel}, which has {ext.Length}";
            return (new TensorEntry(t.Name, dtype, dims, TensorState.Truncated, new UnavailableLocator(ext.Name, "the external data file is truncated: " + why), why), null);
        }
        return (new TensorEntry(t.Name, dtype, dims, TensorState.Ok, new ContiguousLocator(ext, offset)), (ext, offset));
    }

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        if (!disposing) return;
        CloseExternalFiles();
        if (ownsSource) source.Dispose();
    }
}
