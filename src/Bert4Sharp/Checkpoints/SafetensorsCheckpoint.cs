namespace Bert4Sharp.Checkpoints;

using System.Buffers.Binary;
using System.Text.Json;

/// <summary>
/// Reader for the safetensors format: an 8-byte little-endian header length, a JSON header
/// (<c>name → {dtype, shape, data_offsets}</c> plus optional <c>__metadata__</c>), then raw data.
/// </summary>
public sealed class SafetensorsCheckpoint : Checkpoint
{
    /// <summary>Headers larger than this are refused (the reference implementation's limit).</summary>
    public const long MaxHeaderBytes = 100_000_000;

    readonly ByteSource source;
    readonly bool ownsSource;
    readonly List<TensorEntry> entries = [];
    readonly Dictionary<string, string> metadata = [];

    internal SafetensorsCheckpoint(ByteSource source, bool ownsSource)
    {
        this.source = source;
        this.ownsSource = ownsSource;
        string file = source.Name;
        if (source.Length < 8) throw new CheckpointFormatException(file, null, $"a safetensors file starts with an 8-byte header length; this one has {source.Length} bytes");
        Span<byte> lenBytes = stackalloc byte[8];
        source.Read(0, lenBytes);
        ulong headerLen = BinaryPrimitives.ReadUInt64LittleEndian(lenBytes);
        if (headerLen > MaxHeaderBytes || (long)headerLen > source.Length - 8)
            throw new CheckpointFormatException(file, null, $"header length {headerLen} is past the end of the file ({source.Length} bytes) or above {MaxHeaderBytes}");
        byte[] header = source.ReadArray(8, (long)headerLen);
        long dataStart = 8 + (long)headerLen, dataLength = source.Length - dataStart;

        if (!System.Text.Unicode.Utf8.IsValid(header))
            throw new CheckpointFormatException(file, null, "the header is not valid UTF-8");
        JsonDocument doc;
        try { doc = JsonDocument.Parse(header, new JsonDocumentOptions { MaxDepth = 8 }); }
        catch (JsonException e) { throw new CheckpointFormatException(file, null, $"the header is not valid JSON: {e.Message}", e); }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new CheckpointFormatException(file, null, "the header must be a JSON object");
            var ranges = new List<(long Begin, long End, string Name)>();
            foreach (var prop in doc.RootElement.EnumerateObject())
            {
                if (prop.Name == "__metadata__")
                {
                    if (prop.Value.ValueKind != JsonValueKind.Object)
                        throw new CheckpointFormatException(file, "__metadata__", "must be an object of strings");
                    foreach (var m in prop.Value.EnumerateObject())
                    {
                        if (m.Value.ValueKind != JsonValueKind.String)
                            throw new CheckpointFormatException(file, "__metadata__", $"value of '{m.Name}' must be a string");
                        metadata[m.Name] = m.Value.GetString()!;
                    }
                    continue;
                }
                var (entry, begin, end) = ParseEntry(file, prop, dataStart, dataLength);
                entries.Add(entry);
                ranges.Add((begin, end, entry.Name));
            }
            ranges.Sort((a, b) => a.Begin != b.Begin ? a.Begin.CompareTo(b.Begin) : a.End.CompareTo(b.End));
            for (int i = 1; i < ranges.Count; i++)
            {
                if (ranges[i].Begin < ranges[i - 1].End)
                    throw new CheckpointFormatException(file, ranges[i].Name, $"data_offsets [{ranges[i].Begin}, {ranges[i].End}) overlap those of '{ranges[i - 1].Name}' [{ranges[i - 1].Begin}, {ranges[i - 1].End})");
            }
        }
    }

    (TensorEntry, long, long) ParseEntry(string file, JsonProperty prop, long dataStart, long dataLength)
    {
        string name = prop.Name;
        var v = prop.Value;
        if (v.ValueKind != JsonValueKind.Object)
            throw new CheckpointFormatException(file, name, "each tensor must be an object with dtype, shape and data_offsets");
        if (!v.TryGetProperty("dtype", out var dt) || dt.ValueKind != JsonValueKind.String)
            throw new CheckpointFormatException(file, name, "missing string field 'dtype'");
        var dtype = TensorDTypeExtensions.FromSafetensorsName(dt.GetString()!)
            ?? throw new CheckpointFormatException(file, name, $"unknown dtype '{dt.GetString()}' (known: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL)");
        if (!v.TryGetProperty("shape", out var sh) || sh.ValueKind != JsonValueKind.Array)
            throw new CheckpointFormatException(file, name, "missing array field 'shape'");
        var shape = new long[sh.GetArrayLength()];
        int k = 0;
        foreach (var d in sh.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out long dim) || dim < 0)
                throw new CheckpointFormatException(file, name, $"shape entries must be non-negative integers, got {d.GetRawText()}");
            shape[k++] = dim;
        }
        if (!v.TryGetProperty("data_offsets", out var off) || off.ValueKind != JsonValueKind.Array || off.GetArrayLength() != 2)
            throw new CheckpointFormatException(file, name, "missing field 'data_offsets' [begin, end]");
        long[] be = new long[2];
        k = 0;
        foreach (var o in off.EnumerateArray())
        {
            if (o.ValueKind != JsonValueKind.Number || !o.TryGetInt64(out be[k]) || be[k] < 0)
                throw new CheckpointFormatException(file, name, $"data_offsets must be non-negative integers, got {off.GetRawText()}");
            k++;
        }
        long begin = be[0], end = be[1];
        if (end < begin) throw new CheckpointFormatException(file, name, $"data_offsets [{begin}, {end}) end before they begin");
        if (end > dataLength) throw new CheckpointFormatException(file, name, $"data_offsets [{begin}, {end}) run past the end of the data section ({dataLength} bytes)");
        long expected;
        try { expected = checked(ShapeMath.ElementCount(shape) * dtype.ElementSize()); }
        catch (OverflowException) { throw new CheckpointFormatException(file, name, $"shape [{string.Join(", ", shape)}] is too large"); }
        if (end - begin != expected)
            throw new CheckpointFormatException(file, name, $"{dtype.SafetensorsName()} [{string.Join(", ", shape)}] needs {expected} bytes but data_offsets span {end - begin}");
        var entry = new TensorEntry(name, dtype, shape, TensorState.Ok, new ContiguousLocator(source, dataStart + begin));
        return (entry, begin, end);
    }

    /// <inheritdoc/>
    public override string Path => source.Name;
    /// <inheritdoc/>
    public override CheckpointFormat Format => CheckpointFormat.Safetensors;
    /// <inheritdoc/>
    public override IReadOnlyList<TensorEntry> Entries => entries;
    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, string> Metadata => metadata;

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        if (disposing && ownsSource) source.Dispose();
    }
}
