namespace Bert4Sharp.Checkpoints.Onnx;

/// <summary>
/// Streaming protobuf wire-format reader over a window of a <see cref="ByteSource"/>. Messages are
/// walked field by field through a small shared buffer; length-delimited fields that are not needed
/// (tensor bytes, attributes) are skipped by position and never read, so a 1 GB model costs a few
/// kilobytes of managed memory to index. Every malformed length, tag or varint raises a
/// <see cref="CheckpointFormatException"/> naming the file and <see cref="What"/>.
/// </summary>
internal sealed class ProtoStream
{
    /// <summary>The buffer shared by a reader and its sub-message readers.</summary>
    sealed class Window(ByteSource source)
    {
        public readonly ByteSource Source = source;
        public readonly byte[] Buffer = new byte[64 * 1024];
        public long Start;
        public int Length;
    }

    readonly Window window;
    readonly long end;
    long pos;

    ProtoStream(Window window, long start, long end, string? what)
    {
        this.window = window;
        pos = start;
        this.end = end;
        What = what;
    }

    /// <summary>A reader over the whole source.</summary>
    public static ProtoStream Over(ByteSource source, string? what) => new(new Window(source), 0, source.Length, what);

    /// <summary>A reader over <c>[start, end)</c> of the source (bounds already checked by the caller).</summary>
    public static ProtoStream Over(ByteSource source, long start, long end, string? what) => new(new Window(source), start, end, what);

    /// <summary>The entry named in errors (a tensor name or a structural path such as <c>graph.node[3]</c>).</summary>
    public string? What { get; set; }

    /// <summary>Absolute offset of the next byte in the source.</summary>
    public long Position => pos;

    /// <summary>True when the message has no more fields.</summary>
    public bool End => pos >= end;

    /// <summary>A format error naming the file and <see cref="What"/>.</summary>
    public CheckpointFormatException Error(string message) => new(window.Source.Name, What, message);

    byte Byte()
    {
        if (pos >= end) throw Error(pos >= window.Source.Length
            ? $"the file ends at byte {window.Source.Length} inside a protobuf field: it is truncated"
            : $"a protobuf field runs past the end of its enclosing message (byte {end})");
        long rel = pos - window.Start;
        if (rel < 0 || rel >= window.Length)
        {
            window.Start = pos;
            window.Length = (int)Math.Min(window.Buffer.Length, window.Source.Length - pos);
            window.Source.Read(pos, window.Buffer.AsSpan(0, window.Length), What);
            rel = 0;
        }
        pos++;
        return window.Buffer[rel];
    }

    /// <summary>A base-128 varint.</summary>
    public ulong Varint()
    {
        ulong v = 0;
        for (int shift = 0; shift < 64; shift += 7)
        {
            byte b = Byte();
            v |= (ulong)(b & 0x7f) << shift;
            if (b < 0x80) return v;
        }
        throw Error($"varint longer than 10 bytes at byte {pos}");
    }

    /// <summary>The next field's number and wire type.</summary>
    public (int Field, int WireType) Tag()
    {
        long at = pos;
        ulong t = Varint();
        if (t >> 3 == 0 || t >> 3 > int.MaxValue) throw Error($"bad protobuf tag {t} at byte {at}: not an ONNX model, or a corrupt one");
        return ((int)(t >> 3), (int)(t & 7));
    }

    /// <summary>Reads a length prefix and returns the payload's absolute range; the reader moves past it.</summary>
    public (long Offset, long Length) Bytes()
    {
        long at = pos;
        ulong n = Varint();
        if (n > (ulong)(end - pos))
            throw Error(pos + (long)Math.Min(n, long.MaxValue / 2) > window.Source.Length
                ? $"a field at byte {at} claims {n} bytes but the file ends at {window.Source.Length}: it is truncated or corrupt"
                : $"a field at byte {at} claims {n} bytes, past the end of its enclosing message (byte {end})");
        long start = pos;
        pos += (long)n;
        return (start, (long)n);
    }

    /// <summary>A length-delimited field read as a sub-message sharing this reader's buffer.</summary>
    public ProtoStream Message(string? what)
    {
        var (offset, length) = Bytes();
        return new ProtoStream(window, offset, offset + length, what);
    }

    /// <summary>A length-delimited field read as UTF-8 text.</summary>
    public string String()
    {
        var (offset, length) = Bytes();
        if (length == 0) return "";
        if (length > 1 << 20) throw Error($"a string field of {length} bytes at byte {offset} is too long for a name");
        long rel = offset - window.Start;
        if (rel >= 0 && rel + length <= window.Length) return System.Text.Encoding.UTF8.GetString(window.Buffer, (int)rel, (int)length);
        return System.Text.Encoding.UTF8.GetString(window.Source.ReadArray(offset, length, What));
    }

    /// <summary>Fixed 8 bytes, little-endian.</summary>
    public ulong Fixed64()
    {
        ulong v = 0;
        for (int i = 0; i < 8; i++) v |= (ulong)Byte() << (8 * i);
        return v;
    }

    /// <summary>Fixed 4 bytes, little-endian.</summary>
    public uint Fixed32()
    {
        uint v = 0;
        for (int i = 0; i < 4; i++) v |= (uint)Byte() << (8 * i);
        return v;
    }

    /// <summary>Counts the varints in a packed range (read through the buffer).</summary>
    public long CountVarints(long offset, long length)
    {
        var r = new ProtoStream(window, offset, offset + length, What);
        long n = 0;
        while (!r.End)
        {
            r.Varint();
            n++;
        }
        return n;
    }

    /// <summary>A reader over an absolute range already known to lie inside this one (a packed field).</summary>
    public ProtoStream Range(long offset, long length) => new(window, offset, offset + length, What);

    /// <summary>Skips a field of the given wire type.</summary>
    public void Skip(int wireType)
    {
        switch (wireType)
        {
            case 0: Varint(); break;
            case 1: Advance(8); break;
            case 2: Bytes(); break;
            case 5: Advance(4); break;
            default: throw Error($"unsupported protobuf wire type {wireType} before byte {pos} (groups are not used by ONNX): the file is corrupt");
        }
    }

    void Advance(int n)
    {
        if (n > end - pos) throw Error($"a fixed-width field at byte {pos} runs past the end of its message (byte {end})");
        pos += n;
    }
}
